"""The runner engine end to end, in this process: real Chromium, Postgres, S3 (moto), HTTP.

A person's side is played through the API role: checkpoints are answered and commands
inserted with `db.as_user(claims)`, exactly as the functions do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from aef.db import Database
from aef.settings import Settings
from tests.integration.factories import admin_connection
from tests.runner.helpers import (
    answer_checkpoint,
    before_step,
    checkpoints,
    commands,
    dump,
    events,
    execution_row,
    logs,
    pending_checkpoint,
    run_engine,
    send_command,
    status_becomes,
    step_rows,
    task,
)
from tests.runner.pages import Site

pytestmark = pytest.mark.browser

FAST = {"stepTimeout": 5}


def form_plan(base: str) -> list[dict[str, Any]]:
    return [
        task("open", [{"type": "navigate", "url": f"{base}/form"}], label="Open the form"),
        task("fill", [
            {"type": "fill", "selector": "#name", "value": "{{person.name}}"},
            {"type": "fill", "selector": "#email", "value": "{{person.email}}"},
            {"type": "select", "selector": "#plan", "value": "Pro"},
            {"type": "check", "selector": "#terms"},
        ], label="Fill in the form"),
        task("submit", [{"type": "click", "selector": "#submit"},
                        {"type": "wait", "selector": "#result"}],
             label="Submit the form", checkpoint=before_step("Submit the sign-up form?"),
             risky=True),
        task("confirm", [
            {"type": "verify", "selector": "#result", "value": "Thank you, Ada"},
            {"type": "extract", "selector": "#result", "variable": "confirmation"},
        ], label="Read the confirmation"),
    ]


async def test_form_workflow_runs_to_completion_with_an_approved_checkpoint(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    execution = new_execution(form_plan(site.base_url), config=FAST,
                              variables={"person": {"name": "Ada", "email": "ada@example.com"}})
    runner = asyncio.create_task(run_engine(settings, db, execution))

    checkpoint = await pending_checkpoint(db, execution)
    assert checkpoint["step_id"] == "submit" and checkpoint["type"] == "before_step"
    row = execution_row(db, execution)
    assert row["status"] == "waiting_checkpoint" and row["current_step_id"] == "submit"
    # the steps before the checkpoint are done; the risky one has not run
    steps = step_rows(db, execution)
    assert steps[("open", 0)]["status"] == "completed"
    assert steps[("fill", 0)]["status"] == "completed"
    assert steps[("submit", 0)]["status"] == "waiting_checkpoint"
    assert "checkpoint_required" in [e["type"] for e in events(db, execution)]
    pending_message = [e for e in events(db, execution) if e["type"] == "checkpoint_required"][-1]
    assert pending_message["message"]["checkpoints"][0]["title"] == "Submit the sign-up form?"

    answer_checkpoint(db, execution, "approved")
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "completed"
    row = execution_row(db, execution)
    assert row["status"] == "completed" and row["progress"] == 100
    assert row["variables"]["confirmation"] == "Thank you, Ada"
    assert row["finished_at"] is not None and row["lease_expires_at"] is None
    steps = step_rows(db, execution)
    assert {key: s["status"] for key, s in steps.items()} == {
        ("open", 0): "completed", ("fill", 0): "completed", ("submit", 0): "completed",
        ("confirm", 0): "completed"}
    assert steps[("confirm", 0)]["result"] == {"variables": {"confirmation": "Thank you, Ada"}}

    # the outbox: gapless seq, one update per step boundary, the end announced last
    stream = events(db, execution)
    assert [e["seq"] for e in stream] == list(range(1, len(stream) + 1))
    assert stream[-1]["type"] == "execution_complete"
    assert stream[-1]["message"]["execution"]["status"] == "completed"
    # every committed log line was announced exactly once, in order
    announced = [entry["id"] for e in stream for entry in e["message"]["logs"]]
    assert announced == [line["id"] for line in logs(db, execution)]
    progress = [e["message"]["execution"]["progress"] for e in stream]
    assert progress == sorted(progress)
    # each step's completion shows its share: the last one reaches 100 before the end event
    assert stream[-2]["message"]["execution"]["progress"] == 100

    # a screenshot after each step, uploaded to S3 and fetchable through its signed URL
    browser = row["browser"]
    assert browser["screenshotKey"].startswith(f"executions/{execution.id}/")
    async with httpx.AsyncClient() as http:
        shot = await http.get(browser["screenshot"])
    assert shot.status_code == 200 and shot.content[:3] == b"\xff\xd8\xff"
    shots = {e["message"]["browser"]["screenshot"] for e in stream
             if e["message"]["browser"]["screenshot"]}
    assert len(shots) >= 4
    assert browser["currentUrl"].startswith(f"{site.base_url}/done")


async def test_rejected_checkpoint_cancels_the_execution(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    execution = new_execution(form_plan(site.base_url)[:3], config=FAST,
                              variables={"person": {"name": "Ada", "email": "a@b.c"}})
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await pending_checkpoint(db, execution)
    answer_checkpoint(db, execution, "rejected")
    outcome = await asyncio.wait_for(runner, 30)

    assert outcome.status == "cancelled"
    assert execution_row(db, execution)["status"] == "cancelled"
    steps = step_rows(db, execution)
    assert steps[("submit", 0)]["status"] == "cancelled"
    assert steps[("fill", 0)]["status"] == "completed"
    assert any("rejected" in line["message"] for line in logs(db, execution))
    assert events(db, execution)[-1]["type"] == "execution_complete"


async def test_transient_errors_are_retried_automatically_and_announced(
        db: Database, settings: Settings, site: Site, new_execution: Any, unique: str) -> None:
    plan = [task("flaky", [{"type": "navigate", "url": f"{site.base_url}/flaky?key={unique}"},
                           {"type": "verify", "selector": "#ok"}])]
    execution = new_execution(plan, config=FAST)
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)

    assert outcome.status == "completed"
    assert site.hits[f"flaky:{unique}"] == 3
    errors = [e["message"]["error"] for e in events(db, execution) if e["type"] == "error"]
    assert len(errors) == 2
    for error in errors:
        assert error["auto_retry_in"] == 1  # 0.2 s, announced in whole seconds
        assert "HTTP 503" in error["message"]
        assert [o["action"] for o in error["recovery_options"]] == [
            "retry", "skip", "manual_takeover", "stop"]
    step = step_rows(db, execution)[("flaky", 0)]
    assert step["status"] == "completed" and step["attempts"] == 3 and step["error"] is None
    assert execution_row(db, execution)["error"] is None


async def test_hard_error_waits_for_recovery_then_skip_continues(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
        task("check", [{"type": "verify", "selector": "#title", "value": "Nope",
                        "timeoutMs": 300}]),
        task("after", [{"type": "click", "selector": "#go"},
                       {"type": "verify", "selector": "#title", "value": "Clicked 1"}]),
    ]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))

    row = await status_becomes(db, execution, "waiting_recovery")
    assert [o["action"] for o in row["error"]["recovery_options"]] == [
        "retry", "skip", "manual_takeover", "stop"]
    assert "auto_retry_in" not in row["error"]
    assert step_rows(db, execution)[("check", 0)]["status"] == "failed"
    error_events = [e for e in events(db, execution) if e["type"] == "error"]
    assert error_events and error_events[-1]["message"]["error"]["message"] == row["error"][
        "message"]

    send_command(db, execution, "pause")  # not applicable now: refused, the run waits on
    send_command(db, execution, "skip", step_id="check")
    outcome = await asyncio.wait_for(runner, 30)

    assert outcome.status == "completed"
    steps = step_rows(db, execution)
    assert steps[("check", 0)]["status"] == "skipped"
    assert steps[("after", 0)]["status"] == "completed"
    assert [c["status"] for c in commands(db, execution)] == ["rejected", "done"]


async def test_loop_over_an_extracted_list(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [
        task("inbox", [
            {"type": "navigate", "url": f"{site.base_url}/emails"},
            {"type": "extract", "selector": "li.email", "many": True,
             "schema": {"properties": {"id": {}, "subject": {}, "category": {}}},
             "variable": "emails"},
            {"type": "extract", "selector": "li.email", "many": True, "attribute": "data-id",
             "variable": "ids"},
        ]),
        {"id": "each", "label": "Each email", "kind": "loop", "method": "automated",
         "loop": {"iterator": "email", "over": "emails", "maxIterations": 10},
         "children": [
             task("open-email", [
                 {"type": "navigate", "url": f"{site.base_url}/email?id={{{{email.id}}}}"},
                 {"type": "verify", "selector": "#subject", "value": "{{email.subject}}"},
                 {"type": "extract", "selector": "#category", "variable": "last_category"},
             ]),
         ]},
    ]
    execution = new_execution(plan, config=FAST)
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)

    assert outcome.status == "completed"
    assert [site.hits[f"email:e{i}"] for i in (1, 2, 3)] == [1, 1, 1]
    steps = step_rows(db, execution)
    assert [steps[("open-email", i)]["status"] for i in (1, 2, 3)] == ["completed"] * 3
    assert steps[("each", 0)]["result"] == {"iterations": 3}
    variables = execution_row(db, execution)["variables"]
    assert variables["ids"] == ["e1", "e2", "e3"]
    assert [e["id"] for e in variables["emails"]] == ["e1", "e2", "e3"]
    assert variables["last_category"] == "investor"


async def test_loop_bounded_by_max_loop_iterations(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [{"id": "each", "label": "Each", "kind": "loop", "method": "automated",
             "loop": {"iterator": "item", "over": "items", "maxIterations": 50},
             "children": [task("visit", [
                 {"type": "navigate", "url": f"{site.base_url}/page?n={{{{item.n}}}}"}])]}]
    execution = new_execution(plan, config=FAST,
                              variables={"items": [{"n": i} for i in range(5)]})
    capped = settings.model_copy(update={"max_loop_iterations": 2})
    outcome = await asyncio.wait_for(run_engine(capped, db, execution), 60)

    assert outcome.status == "completed"
    assert sorted(k for k in step_rows(db, execution) if k[0] == "visit") == [
        ("visit", 1), ("visit", 2)]
    assert any("only the first 2" in line["message"] for line in logs(db, execution))


def decision_plan(base: str, rule: str | None) -> list[dict[str, Any]]:
    return [
        task("read", [{"type": "navigate", "url": f"{base}/email?id=e1"},
                      {"type": "extract", "selector": "#category", "variable": "category"}]),
        {"id": "is-investor", "label": "Investor email?", "kind": "decision",
         "method": "automated",
         "decision": {"question": "Is this an investor email?", "rule": rule,
                      "yes": [task("yes-step", [{"type": "navigate",
                                                 "url": f"{base}/page?n=yes"}])],
                      "no": [task("no-step", [{"type": "navigate",
                                               "url": f"{base}/page?n=no"}])]}},
        task("last", [{"type": "verify", "selector": "#title"}]),
    ]


@pytest.mark.parametrize(("rule", "branch"), [('category == "investor"', "yes"),
                                               ('category == "personal"', "no")])
async def test_decision_by_rule(db: Database, settings: Settings, site: Site,
                                new_execution: Any, rule: str, branch: str) -> None:
    execution = new_execution(decision_plan(site.base_url, rule), config=FAST)
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)

    assert outcome.status == "completed"
    steps = step_rows(db, execution)
    assert steps[("is-investor", 0)]["result"] == {"branch": branch}
    assert (f"{branch}-step", 0) in steps
    assert ("no-step" if branch == "yes" else "yes-step", 0) not in steps
    assert checkpoints(db, execution) == []


@pytest.mark.parametrize(("answer", "branch"), [("approved", "yes"), ("rejected", "no")])
async def test_decision_by_checkpoint(db: Database, settings: Settings, site: Site,
                                      new_execution: Any, answer: str, branch: str) -> None:
    execution = new_execution(decision_plan(site.base_url, None), config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    checkpoint = await pending_checkpoint(db, execution)
    assert checkpoint["type"] == "decision"
    assert checkpoint["title"] == "Is this an investor email?"
    answer_checkpoint(db, execution, answer)
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "completed"
    steps = step_rows(db, execution)
    assert steps[("is-investor", 0)]["result"] == {"branch": branch}
    assert steps[(f"{branch}-step", 0)]["status"] == "completed"


async def test_unevaluable_rule_asks_a_person(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    execution = new_execution(decision_plan(site.base_url, 'missing.var == "x"'), config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await pending_checkpoint(db, execution)
    answer_checkpoint(db, execution, "approved")
    assert (await asyncio.wait_for(runner, 60)).status == "completed"
    assert step_rows(db, execution)[("is-investor", 0)]["result"] == {"branch": "yes"}


async def test_pause_and_resume(db: Database, settings: Settings, site: Site,
                                new_execution: Any) -> None:
    plan = [task(f"p{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                           {"type": "wait", "timeoutMs": 150}]) for i in range(6)]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await status_becomes(db, execution, "running")
    send_command(db, execution, "pause")
    paused = await status_becomes(db, execution, "paused")
    done_while_paused = sum(s["status"] == "completed" for s in step_rows(db, execution).values())
    await asyncio.sleep(1.5)
    assert execution_row(db, execution)["status"] == "paused"
    assert sum(s["status"] == "completed"
               for s in step_rows(db, execution).values()) == done_while_paused
    assert paused["progress"] < 100
    send_command(db, execution, "resume")
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "completed"
    statuses = [e["message"]["execution"]["status"] for e in events(db, execution)]
    assert "paused" in statuses
    assert statuses.index("paused") < len(statuses) - 1
    assert [c["status"] for c in commands(db, execution)] == ["done", "done"]


async def test_secrets_never_reach_logs_events_or_realtime(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    secret = "hunter2-Sup3r-S3cret"
    plan = [
        task("login", [
            {"type": "navigate", "url": f"{site.base_url}/login"},
            {"type": "fill", "selector": "#pw", "value": "{{site_password}}"},
            {"type": "click", "selector": "#signin"},
            {"type": "extract", "selector": "#echo", "variable": "echo"},
        ]),
        task("fails", [{"type": "verify", "selector": "#echo",
                        "value": "{{site_password}} nope", "timeoutMs": 300}]),
    ]
    execution = new_execution(plan, config=FAST, secret_values={"site_password": secret})
    filters = [list(h.filters) for h in logging.getLogger().handlers]
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await status_becomes(db, execution, "waiting_recovery")
    send_command(db, execution, "skip")
    outcome = await asyncio.wait_for(runner, 60)
    assert outcome.status == "completed"
    # its redaction filter left the process log with it (a pool worker runs other executions)
    assert [list(h.filters) for h in logging.getLogger().handlers] == filters

    with db.as_service() as conn:
        rows = {
            "logs": conn.execute("select * from aef_logs where execution_id = %s",
                                 (execution.id,)).fetchall(),
            "events": conn.execute("select * from aef_events where execution_id = %s",
                                   (execution.id,)).fetchall(),
            "steps": conn.execute("select * from aef_execution_steps where execution_id = %s",
                                  (execution.id,)).fetchall(),
            "execution": conn.execute("select * from aef_executions where id = %s",
                                      (execution.id,)).fetchall(),
            "checkpoints": conn.execute("select * from aef_checkpoints where execution_id = %s",
                                        (execution.id,)).fetchall(),
        }
    with admin_connection(db) as conn:
        rows["realtime"] = conn.execute(
            "select * from realtime.messages where topic = %s",
            (f"execution:{execution.id}",)).fetchall()
        rows["secrets_left"] = conn.execute(
            "select * from aef_execution_secrets where execution_id = %s",
            (execution.id,)).fetchall()
    text = dump(rows)
    assert rows["realtime"] and rows["logs"] and rows["events"]
    assert secret not in text
    assert "••••••" in text  # the echoed value was there, masked
    assert rows["secrets_left"] == []  # deleted when the execution completed
