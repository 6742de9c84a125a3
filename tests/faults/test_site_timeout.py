"""Fault e: the site under automation answers slower than the step timeout. The runner
announces its automatic retries, then waits for a person with the recovery options; a stop
through the API then ends the execution `cancelled` (acknowledged by the runner).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aef.db import Database
from aef.settings import get_settings
from tests.faults.checks import (
    assert_outbox_intact,
    assert_steps_journaled,
    blocking,
    events,
    execution_row,
    log_ids,
    log_lines,
    step_rows,
)
from tests.faults.conftest import Person
from tests.integration.factories import create_document
from tests.runner.helpers import aef_document, eventually, task
from tests.runner.pages import Site

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAX_AUTO_RETRIES = 2


async def test_slow_site_auto_retries_then_waits_for_a_person_then_stop_cancels(
        api: Any, db: Database, person: Person, site: Site, spawn: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the runner closes its browser before acknowledging; give it time so the stop is clean
    monkeypatch.setattr(get_settings(), "stop_ack_timeout_seconds", 15.0)
    launcher = spawn(AEF_MAX_AUTO_RETRIES=str(MAX_AUTO_RETRIES),
                     AEF_AUTO_RETRY_DELAY_SECONDS="0.3")
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
            task("slow", [{"type": "navigate", "url": f"{site.base_url}/slow?ms=3000"}]),
            task("after", [{"type": "navigate", "url": f"{site.base_url}/page?n=2"}])]
    document = create_document(db, person.user, document=aef_document(plan, {"stepTimeout": 1}))
    reply = await blocking(api.call, "POST", "/api/aef/execute", person.token,
                           {"aefDocumentId": str(document["id"])})
    assert reply.status == 202 and reply.body["status"] == "queued", reply.body
    execution_id = reply.body["executionId"]
    proc = launcher.latest()

    def waiting_for_a_person() -> dict[str, Any] | None:
        row = execution_row(db, execution_id)
        if row["status"] == "waiting_recovery" and row["error"] \
                and "auto_retry_in" not in row["error"]:
            return row
        return None

    row = await eventually(waiting_for_a_person, within=60, what="recovery after auto-retries")
    flushed = log_ids(db, execution_id)
    assert row["current_step_id"] == "slow"
    assert row["error"]["stepId"] == "slow"
    assert "Timeout 1000ms exceeded" in row["error"]["message"]
    assert [o["action"] for o in row["error"]["recovery_options"]] \
        == ["retry", "skip", "manual_takeover", "stop"]
    slow = step_rows(db, execution_id)["slow"]
    assert slow["status"] == "failed" and slow["attempts"] == MAX_AUTO_RETRIES + 1

    errors = [e["message"] for e in events(db, execution_id) if e["type"] == "error"]
    assert [e["error"].get("auto_retry_in") for e in errors] == [1, 1, None]
    assert all(e["execution"]["status"] == "waiting_recovery" for e in errors)
    announced = [line["message"] for line in log_lines(db, execution_id)
                 if line["category"] == "error" and line["level"] == "warn"]
    assert len(announced) == MAX_AUTO_RETRIES
    for attempt, text in enumerate(announced, start=1):
        assert text.endswith(f"retrying automatically in 0.3 s (attempt {attempt} of "
                             f"{MAX_AUTO_RETRIES})"), text
    live = await blocking(api.call, "GET", f"/api/aef/live/{execution_id}", person.token)
    assert live.body["message"]["type"] == "error"
    assert live.body["message"]["error"]["recovery_options"] == row["error"]["recovery_options"]

    # the person gives up: a stop, which the waiting runner acknowledges
    await asyncio.sleep(1.5)  # still waiting: nothing retries on its own any more
    assert step_rows(db, execution_id)["slow"]["attempts"] == MAX_AUTO_RETRIES + 1
    stop = await blocking(api.call, "DELETE", f"/api/aef/stop/{execution_id}", person.token)
    assert stop.status == 200, stop.body
    assert stop.body == {"status": "stopped", "cleanup": "completed"}
    assert await asyncio.to_thread(proc.wait, 20) == 0, launcher.output()

    row = execution_row(db, execution_id)
    assert row["status"] == "cancelled" and row["stop_cleanup"] == "completed"
    steps = step_rows(db, execution_id)
    assert {k: s["status"] for k, s in steps.items()} == {"open": "completed",
                                                          "slow": "cancelled"}
    assert events(db, execution_id)[-1]["type"] == "execution_complete"
    assert log_ids(db, execution_id)[:len(flushed)] == flushed
    assert_outbox_intact(db, execution_id)
    assert_steps_journaled(db, execution_id)
