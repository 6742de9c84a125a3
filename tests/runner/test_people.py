"""A person in the loop: manual takeover, manual steps, checkpoint timeouts, stops while waiting,
the time limit, step selection, the grounding cache and best-effort screenshots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aef.db import Database
from aef.settings import Settings
from tests.runner.helpers import (
    answer_checkpoint,
    before_step,
    checkpoints,
    commands,
    events,
    eventually,
    execution_row,
    logs,
    pending_checkpoint,
    request_stop,
    run_engine,
    send_command,
    status_becomes,
    step_rows,
    task,
)
from tests.runner.pages import Site

pytestmark = pytest.mark.browser

FAST = {"stepTimeout": 5}


async def browser_mode(db: Database, execution: Any, mode: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        row = execution_row(db, execution)
        return row if row["browser"].get("mode") == mode else None
    return await eventually(probe, what=f"browser mode {mode}")


async def test_manual_takeover_from_recovery(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
        task("hard", [{"type": "verify", "selector": "#title", "value": "Never",
                       "timeoutMs": 300}]),
        task("last", [{"type": "verify", "selector": "#title", "value": "Page 9"}]),
    ]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await status_becomes(db, execution, "waiting_recovery")

    send_command(db, execution, "takeover", step_id="hard")
    row = await browser_mode(db, execution, "takeover")
    assert row["status"] == "running"
    send_command(db, execution, "input", payload={"kind": "navigate",
                                                  "url": "http://169.254.169.254/latest"})
    send_command(db, execution, "input", payload={"kind": "navigate",
                                                  "url": f"{site.base_url}/page?n=9"})
    # the API's ActionRequest carries an input as {"action": "takeover", "input": {...}}
    send_command(db, execution, "takeover", payload={"kind": "click_at", "x": 10, "y": 10})
    send_command(db, execution, "input", payload={"kind": "type"})  # no text: refused

    def navigated() -> dict[str, Any] | None:
        row = execution_row(db, execution)
        return row if row["browser"].get("currentUrl", "").endswith("/page?n=9") else None

    await eventually(navigated, what="the person's navigation in a screenshot")
    send_command(db, execution, "release")
    outcome = await asyncio.wait_for(runner, 30)

    assert outcome.status == "completed"
    steps = step_rows(db, execution)
    assert steps[("hard", 0)]["status"] == "completed"
    assert steps[("hard", 0)]["result"] == {"completedBy": "person"}
    assert steps[("last", 0)]["status"] == "completed"  # same browser, the person's page
    assert [c["status"] for c in commands(db, execution)] == [
        "done", "rejected", "done", "done", "rejected", "done"]
    messages = [line["message"] for line in logs(db, execution)]
    assert any(m.startswith("Input refused: Navigation blocked") for m in messages)
    takeover_shots = {e["message"]["browser"]["screenshot"] for e in events(db, execution)
                      if "-takeover" in (e["message"]["browser"]["screenshot"] or "")}
    assert takeover_shots  # screenshots published while the person drove


async def test_manual_step_is_done_by_a_person(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
        {"id": "by-hand", "label": "Pick the right page", "kind": "manual", "method": "manual",
         "instruction": "Open page 5 yourself"},
        task("last", [{"type": "verify", "selector": "#title", "value": "Page 5"}]),
    ]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    checkpoint = await pending_checkpoint(db, execution)
    assert checkpoint["type"] == "manual" and checkpoint["description"] == "Open page 5 yourself"

    send_command(db, execution, "takeover")
    await browser_mode(db, execution, "takeover")
    send_command(db, execution, "input", payload={"kind": "navigate",
                                                  "url": f"{site.base_url}/page?n=5"})
    send_command(db, execution, "release")
    row = await browser_mode(db, execution, "automatic")
    assert row["status"] == "waiting_checkpoint"
    answer_checkpoint(db, execution, "approved")
    outcome = await asyncio.wait_for(runner, 30)

    assert outcome.status == "completed"
    steps = step_rows(db, execution)
    assert steps[("by-hand", 0)]["status"] == "completed"
    assert steps[("last", 0)]["status"] == "completed"


@pytest.mark.parametrize(("default", "step_status"), [("skip", "skipped"),
                                                      ("approve", "completed")])
async def test_unanswered_checkpoint_takes_its_default_action(
        db: Database, settings: Settings, site: Site, new_execution: Any, default: str,
        step_status: str) -> None:
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
        task("guarded", [{"type": "click", "selector": "#go"}],
             checkpoint=before_step("Click it?", timeout=1, default=default)),
        task("last", [{"type": "verify", "selector": "#title"}]),
    ]
    execution = new_execution(plan, config=FAST)
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 30)

    assert outcome.status == "completed"
    assert step_rows(db, execution)[("guarded", 0)]["status"] == step_status
    [checkpoint] = checkpoints(db, execution)
    assert checkpoint["status"] == "expired"
    assert any("expired" in line["message"] for line in logs(db, execution))


async def test_stop_while_waiting_for_a_checkpoint(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}],
                 checkpoint=before_step("Go?"))]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await pending_checkpoint(db, execution)
    request_stop(db, execution)
    outcome = await asyncio.wait_for(runner, 10)

    assert outcome.status == "cancelled"
    assert execution_row(db, execution)["status"] == "cancelled"
    assert step_rows(db, execution)[("open", 0)]["status"] == "cancelled"
    assert [c["status"] for c in checkpoints(db, execution)] == ["expired"]
    assert events(db, execution)[-1]["type"] == "execution_complete"


async def test_stop_command_while_paused(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task(f"p{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                           {"type": "wait", "timeoutMs": 200}]) for i in range(4)]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await status_becomes(db, execution, "running")
    send_command(db, execution, "pause")
    await status_becomes(db, execution, "paused")
    send_command(db, execution, "stop")
    outcome = await asyncio.wait_for(runner, 10)

    assert outcome.status == "cancelled"
    assert execution_row(db, execution)["status"] == "cancelled"
    assert all(s["status"] in ("completed", "cancelled")
               for s in step_rows(db, execution).values())


async def test_time_limit_fails_the_execution(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
            task("slow", [{"type": "wait", "timeoutMs": 20_000}])]
    execution = new_execution(plan, config={"stepTimeout": 30})
    limited = settings.model_copy(update={"execution_time_limit_seconds": 6})
    outcome = await asyncio.wait_for(run_engine(limited, db, execution), 30)

    assert outcome.status == "failed"
    row = execution_row(db, execution)
    assert row["status"] == "failed" and "time limit" in row["error"]["message"]
    assert [o["action"] for o in row["error"]["recovery_options"]] == ["resume"]
    steps = step_rows(db, execution)
    assert steps[("open", 0)]["status"] == "completed"
    assert steps[("slow", 0)]["status"] == "failed"
    assert events(db, execution)[-1]["type"] == "execution_complete"


async def test_only_the_selected_steps_run(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task(name, [{"type": "navigate", "url": f"{site.base_url}/page?n={name}"}])
            for name in ("a", "b", "c")]
    execution = new_execution(plan, config=FAST, step_ids=["b"])
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 30)

    assert outcome.status == "completed"
    assert list(step_rows(db, execution)) == [("b", 0)]
    assert execution_row(db, execution)["progress"] == 100


async def test_a_selected_container_runs_with_its_whole_body(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    """The console offers top-level steps: choosing "Log in" must log in, not run an empty
    compound. A step selected inside a selected one adds nothing (one unit of progress)."""
    def visit(name: str) -> dict[str, Any]:
        return task(name, [{"type": "navigate", "url": f"{site.base_url}/page?n={name}"}])
    plan = [{"id": "login", "label": "Log in", "kind": "compound", "method": "automated",
             "children": [visit("open"), visit("submit")]},
            visit("between"),
            {"id": "each", "label": "Each page", "kind": "loop", "method": "automated",
             "loop": {"iterator": "n", "over": "pages", "maxIterations": 5},
             "children": [visit("read")]}]
    execution = new_execution(plan, config=FAST, step_ids=["login", "submit", "each"],
                              variables={"pages": [1, 2]})
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)

    assert outcome.status == "completed"
    ran = step_rows(db, execution)
    assert {key for key, row in ran.items() if row["status"] == "completed"} == {
        ("login", 0), ("open", 0), ("submit", 0), ("each", 0),
        *{key for key in ran if key[0] == "read"}}
    assert len([key for key in ran if key[0] == "read"]) == 2
    assert ("between", 0) not in ran
    assert execution_row(db, execution)["progress"] == 100


async def test_grounded_locator_is_cached_across_loop_iterations(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [{"id": "each", "label": "Each page", "kind": "loop", "method": "automated",
             "loop": {"iterator": "n", "over": "pages", "maxIterations": 5},
             "children": [task("press-go", [
                 {"type": "navigate", "url": f"{site.base_url}/page?n={{{{n}}}}"},
                 {"type": "act", "instruction": "Click the 'Go' button"},
                 {"type": "verify", "selector": "#title", "value": "Clicked {{n}}"},
             ])]}]
    execution = new_execution(plan, config=FAST, variables={"pages": [1, 2, 3]})
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 60)

    assert outcome.status == "completed"
    steps = step_rows(db, execution)
    first = steps[("press-go", 1)]["locator"]["actions"]["1"]
    assert first["source"] == "grounding" and first["locator"]["strategy"]
    for iteration in (2, 3):
        cached = steps[("press-go", iteration)]["locator"]["actions"]["1"]
        assert cached["source"] == "cache" and cached["locator"] == first["locator"]
    # the act's log line says which element was chosen and why, for an audit afterwards
    acts = [line for line in logs(db, execution) if line["message"].startswith("Clicked ")]
    assert acts and all("chose button" in line["message"] for line in acts)
    element = acts[0]["details"]["element"]
    assert element["role"] == "button" and element["how"] and element["score"] > 0.75
    assert "runnerUp" in element and "margin" in element


async def test_a_failed_upload_never_fails_a_step(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}])]
    execution = new_execution(plan, config=FAST)
    broken = settings.model_copy(update={"screenshot_bucket": "no-such-bucket"})
    outcome = await asyncio.wait_for(run_engine(broken, db, execution), 30)

    assert outcome.status == "completed"
    assert step_rows(db, execution)[("open", 0)]["status"] == "completed"
    warnings = [line for line in logs(db, execution) if line["level"] == "warn"]
    assert any("Screenshot upload failed" in line["message"] for line in warnings)


async def test_resume_from_starts_at_the_named_step(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [task(name, [{"type": "navigate", "url": f"{site.base_url}/page?n={name}"}])
            for name in ("a", "b", "c")]
    execution = new_execution(plan, config=FAST)
    with db.as_service() as conn:
        conn.execute("update aef_executions set resume_from = 'b' where id = %s",
                     (execution.id,))
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 30)

    assert outcome.status == "completed"
    assert sorted(step_rows(db, execution)) == [("b", 0), ("c", 0)]
    assert execution_row(db, execution)["progress"] == 100


async def test_skip_queued_with_a_relaunch_skips_that_step(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    """The API delivers `skip <step>` on a failed execution as a command plus a launch."""
    plan = [task(name, [{"type": "navigate", "url": f"{site.base_url}/page?n={name}"}])
            for name in ("a", "b", "c")]
    execution = new_execution(plan, config=FAST)
    send_command(db, execution, "skip", step_id="b")
    outcome = await asyncio.wait_for(run_engine(settings, db, execution), 30)

    assert outcome.status == "completed"
    statuses = {k: s["status"] for k, s in step_rows(db, execution).items()}
    assert statuses == {("a", 0): "completed", ("b", 0): "skipped", ("c", 0): "completed"}
    assert [c["status"] for c in commands(db, execution)] == ["done"]


async def test_answering_a_manual_step_ends_the_takeover(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
        {"id": "by-hand", "label": "Pick the right page", "kind": "manual", "method": "manual",
         "instruction": "Open page 7 yourself"},
        task("last", [{"type": "verify", "selector": "#title", "value": "Page 7"}]),
    ]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await pending_checkpoint(db, execution)
    send_command(db, execution, "takeover")
    await browser_mode(db, execution, "takeover")
    send_command(db, execution, "input", payload={"kind": "navigate",
                                                  "url": f"{site.base_url}/page?n=7"})

    def input_done() -> bool:
        return [c["status"] for c in commands(db, execution)] == ["done", "done"]

    await eventually(input_done, what="the input to be applied")
    answer_checkpoint(db, execution, "approved")  # no release: the answer ends the takeover
    outcome = await asyncio.wait_for(runner, 30)

    assert outcome.status == "completed"
    assert step_rows(db, execution)[("last", 0)]["status"] == "completed"
    assert execution_row(db, execution)["browser"]["mode"] == "closed"


async def test_a_stop_cuts_a_long_manual_input_short(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    """10,000 characters typed by a person take ~25 s; a stop one second in must not wait
    for them (the input is cut between two chunks, the browser closed)."""
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"},
                      {"type": "click", "selector": "#note"}]),
        {"id": "by-hand", "label": "Write the note", "kind": "manual", "method": "manual",
         "instruction": "Type the note yourself"},
    ]
    execution = new_execution(plan, config=FAST)
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await pending_checkpoint(db, execution)
    send_command(db, execution, "takeover")
    await browser_mode(db, execution, "takeover")
    send_command(db, execution, "input", payload={"kind": "type", "text": "x" * 10_000})

    def typing() -> bool | None:
        return True if any(c["command"] == "input" for c in commands(db, execution)) else None

    await eventually(typing, what="the input command")
    await asyncio.sleep(1.0)
    request_stop(db, execution)
    outcome = await asyncio.wait_for(runner, 20)  # typing all of it would take ~25 s more
    assert outcome.status == "cancelled"
    assert execution_row(db, execution)["status"] == "cancelled"
    assert not any(line["message"].startswith("Manual input: typed")
                   for line in logs(db, execution))


async def test_a_long_typed_value_arrives_whole(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    """`type` with a long value: filled, then its tail typed key by key; nothing lost."""
    note = " ".join(f"{i:04d}" for i in range(120))  # 599 characters
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"},
                          {"type": "type", "selector": "#note", "value": note},
                          {"type": "verify", "selector": "#note", "value": note}])]
    execution = new_execution(plan, config=FAST)
    outcome = await run_engine(settings, db, execution)
    assert outcome.status == "completed", outcome.message
