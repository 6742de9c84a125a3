"""The README's main job, headless: `aef demo --yes` against the running stack.

The demo transforms the demo workflow through the API, executes it (a real runner subprocess
driving Chromium against the local demo site), follows it over Realtime, approves every
checkpoint, and prints a summary. Afterwards the CRM must hold exactly the expected records,
every checkpoint of the execution must be recorded approved, and the logs API must return the
execution's whole history.
"""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from local.demo.seed import DEMO_EMAIL, DEMO_PASSWORD, seed_emails, seed_records
from tests.e2e.conftest import RunningStack, run_demo, task_arn_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEMO_TIMEOUT_SECONDS = 840
INVESTORS = {e.sender_email: e for e in seed_emails() if e.category == "Investor"}
OTHERS = {e.sender_email: e for e in seed_emails() if e.category != "Investor"}


@pytest.fixture(scope="module")
def demo_run(stack: RunningStack) -> dict[str, Any]:
    run = run_demo(stack, DEMO_TIMEOUT_SECONDS)
    return {"returncode": run.returncode, "output": run.output, "execution_id": run.execution_id}


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 60)
def test_demo_completes_watched_over_realtime(demo_run: dict[str, Any]) -> None:
    output = demo_run["output"]
    assert demo_run["returncode"] == 0, output[-6000:]
    assert f"Execution   {demo_run['execution_id']}: completed" in output
    assert "via realtime" in output  # the live view came through the Realtime channel
    assert "Checkpoint '" in output  # at least one checkpoint was asked and approved
    # each checkpoint was shown with its preview and what each answer does
    assert "about to do, on " in output and "preview screenshot: http" in output
    assert "approve: Run this step" in output and "reject: Stop the whole execution" in output
    added = [e for e in INVESTORS.values() if e.sender_email not in
             {r.email for r in seed_records()}]
    assert any(f"Fill the Name field = {e.sender}" in output for e in added), output[-6000:]
    assert DEMO_PASSWORD not in output


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 60)
def test_the_stacks_warm_pool_worker_ran_it(stack: RunningStack,
                                            demo_run: dict[str, Any]) -> None:
    """`aef dev` runs one pool worker by default: no runner process of its own."""
    execution_id = demo_run["execution_id"]
    assert task_arn_of(stack, execution_id).startswith("pool:")
    assert not (stack.state.logs / f"runner-{execution_id}.log").exists()
    assert execution_id in (stack.state.logs / "pool-worker.log").read_text(errors="replace")


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 60)
def test_crm_ends_in_the_expected_state(stack: RunningStack,
                                        demo_run: dict[str, Any]) -> None:
    state = httpx.get(f"{stack.url}/demo/state", timeout=10).json()
    crm = {r["email"]: r for r in state["crm"]}
    seed = {r.email: r for r in seed_records()}
    # new investors were added with the details read from their emails
    for address, email in INVESTORS.items():
        assert address in crm, f"{email.sender} missing from the CRM"
        record = crm[address]
        assert record["name"] == email.sender
        assert record["company"] == email.company
        assert record["investmentFocus"] == email.investment_focus
        if address not in seed:
            assert record["phone"] == email.phone
    # the known investor was updated, the others in the CRM were left alone
    for address, original in seed.items():
        if address in INVESTORS:
            continue
        record = crm[address]
        assert record["investmentFocus"] == original.investment_focus
        assert record["notes"] == original.notes
    # non-investors never reach the CRM and their emails stay unprocessed
    assert not set(OTHERS) & set(crm)
    processed = {e["senderEmail"]: e["processed"] for e in state["emails"]}
    assert {a for a, done in processed.items() if done} == set(INVESTORS)
    new_investors = len(set(INVESTORS) - set(seed))
    assert state["summary"] == {"processed": len(INVESTORS), "added": new_investors,
                                "updated": len(INVESTORS) - new_investors}
    assert len(crm) == len(seed) + new_investors


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 60)
def test_every_checkpoint_was_recorded_approved(stack: RunningStack,
                                                demo_run: dict[str, Any]) -> None:
    with psycopg.connect(stack.info.database_url) as conn:
        rows = conn.execute(
            "select status, responded_by::text from aef_checkpoints where execution_id = %s",
            (demo_run["execution_id"],)).fetchall()
    assert rows, "the demo workflow asks at least one checkpoint"
    assert {status for status, _ in rows} == {"approved"}
    assert {who for _, who in rows} == {stack.info.users["demo@aef.local"]}


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 60)
def test_logs_api_returns_the_whole_history(stack: RunningStack, demo_token: str,
                                            demo_run: dict[str, Any]) -> None:
    execution_id = demo_run["execution_id"]
    with psycopg.connect(stack.info.database_url) as conn:
        expected = [row[0] for row in conn.execute(
            "select id from aef_logs where execution_id = %s order by id", (execution_id,))]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    with httpx.Client(base_url=stack.url, timeout=10,
                      headers={"Authorization": f"Bearer {demo_token}"}) as http:
        while True:
            params: dict[str, Any] = {"limit": 25}
            if cursor:
                params["after"] = cursor
            response = http.get(f"/api/aef/logs/{execution_id}", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [entry["id"] for entry in page["logs"]]
            pages += 1
            cursor = page.get("nextCursor")
            if not cursor:
                break
    assert seen == expected
    assert pages >= 2  # the history is longer than a page: pagination was exercised


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 60)
def test_screenshots_were_downloaded(stack: RunningStack, demo_run: dict[str, Any]) -> None:
    folder = stack.state.screenshots / demo_run["execution_id"]
    shots = sorted(folder.glob("*.jpg"))
    assert shots, f"no screenshots in {folder}"
    assert all(s.read_bytes()[:3] == b"\xff\xd8\xff" for s in shots)  # JPEG files


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 60)
def test_site_address_is_a_variable_and_only_credentials_are_masked(
        stack: RunningStack, demo_run: dict[str, Any]) -> None:
    """`aef demo` passes base_url as an execution variable: URLs in the logs stay readable,
    the credentials stay secret."""
    execution_id = demo_run["execution_id"]
    with psycopg.connect(stack.info.database_url) as conn:
        variables = conn.execute("select variables from aef_executions where id = %s",
                                 (execution_id,)).fetchone()
        messages = [row[0] for row in conn.execute(
            "select message from aef_logs where execution_id = %s order by id",
            (execution_id,))]
    assert variables is not None and variables[0]["base_url"] == stack.url
    assert f"Opened {stack.url}/mail/login" in messages
    masked = [m for m in messages if "\u2022" * 6 in m]
    assert masked and all(m.startswith("Filled textbox") for m in masked), masked
    text = "\n".join(messages)
    assert DEMO_EMAIL not in text and DEMO_PASSWORD not in text
