"""Checkpoint answers inside a loop of 3 items, and a checkpoint nobody answers (issue 15).

skip on item 2 runs items 1 and 3; reject stops the run; timeout with `pause` leaves the
execution paused (browser released after the grace period) and a user's resume through the
service completes it from the last completed step.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from aef import service
from aef.api_models import ActionRequest
from aef.db import Database
from aef.launcher import Launch, get_launcher, set_launcher
from aef.settings import Settings
from tests.runner.helpers import (
    Execution,
    answer_checkpoint,
    before_step,
    checkpoints,
    events,
    eventually,
    execution_row,
    logs,
    run_engine,
    send_command,
    status_becomes,
    step_rows,
    task,
)
from tests.runner.pages import Site

pytestmark = pytest.mark.browser

FAST = {"stepTimeout": 5}
ITEMS = ["1", "2", "3"]


def loop_plan(base: str, *, timeout: int = 60, default: str = "reject") -> list[dict[str, Any]]:
    """A loop over `items`; each item opens its page, then a guarded click, then a check."""
    body = [
        task("open", [{"type": "navigate", "url": f"{base}/page?n={{{{item}}}}"}],
             label="Open the item's page"),
        task("go", [{"type": "click", "selector": "#go"}], label="Click Go",
             checkpoint=before_step("Click Go for this item?", timeout=timeout,
                                    default=default)),
        task("check", [{"type": "verify", "selector": "#title", "value": "Clicked {{item}}"}],
             label="Check the click"),
    ]
    return [{"id": "each", "label": "Each item", "kind": "loop", "method": "automated",
             "actions": [], "children": body,
             "loop": {"iterator": "item", "over": "items", "maxIterations": 10}}]


async def answer_each(db: Database, execution: Execution, answers: list[str]) -> None:
    """Answer the checkpoints in order as they open, one per item."""
    for index, answer in enumerate(answers):
        def probe(index: int = index) -> dict[str, Any] | None:
            rows = checkpoints(db, execution)
            return rows[index] if len(rows) > index and rows[index]["status"] == "pending" \
                else None
        await eventually(probe, what=f"checkpoint {index + 1}")
        answer_checkpoint(db, execution, answer)


def body_status(db: Database, execution: Execution) -> dict[int, list[str]]:
    steps = step_rows(db, execution)
    return {i: [steps[(s, i)]["status"] if (s, i) in steps else "-"
                for s in ("open", "go", "check")] for i in (1, 2, 3)}


async def test_skip_on_item_2_runs_items_1_and_3(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    execution = new_execution(loop_plan(site.base_url), config=FAST, variables={"items": ITEMS})
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await answer_each(db, execution, ["approved", "skipped", "approved"])
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "completed"
    assert [c["iteration"] for c in checkpoints(db, execution)] == [1, 2, 3]
    assert body_status(db, execution) == {1: ["completed"] * 3,
                                          2: ["completed", "skipped", "-"],
                                          3: ["completed"] * 3}
    assert step_rows(db, execution)[("each", 0)]["status"] == "completed"
    assert any("Item 2 of 3 skipped" in line["message"] for line in logs(db, execution))
    # each checkpoint carried the choices valid there, with their meaning
    first = checkpoints(db, execution)[0]
    assert [c["response"] for c in first["choices"]] == ["approve", "skip", "reject"]
    meanings = {c["response"]: c["meaning"] for c in first["choices"]}
    assert "next item" in meanings["skip"] and "whole execution" in meanings["reject"]


async def test_reject_on_item_2_stops_the_run(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    execution = new_execution(loop_plan(site.base_url), config=FAST, variables={"items": ITEMS})
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await answer_each(db, execution, ["approved", "rejected"])
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "cancelled"
    assert execution_row(db, execution)["status"] == "cancelled"
    status = body_status(db, execution)
    assert status[1] == ["completed"] * 3
    assert status[2][1] == "cancelled" and status[3] == ["-", "-", "-"]


@dataclass
class RecordingLauncher:
    """What the API launches on resume: the runner is then run here, in this process."""

    launched: list[tuple[str, str]] = field(default_factory=list)

    def launch(self, execution_id: str, runner_token: str) -> Launch:
        self.launched.append((execution_id, runner_token))
        return Launch(task_arn=f"local:{len(self.launched)}")

    def stop(self, task_arn: str, reason: str) -> bool:
        return False


async def test_unanswered_checkpoint_pauses_then_a_resume_completes_the_run(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    execution = new_execution(loop_plan(site.base_url, default="pause"),
                              config=FAST, variables={"items": ITEMS})
    # item 1 is approved; nobody answers item 2's checkpoint: its time runs out
    quick = settings.model_copy(update={"checkpoint_pause_grace_seconds": 1.0})
    runner = asyncio.create_task(run_engine(quick, db, execution))
    await answer_each(db, execution, ["approved"])
    await time_runs_out(db, execution, index=1)
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "paused"
    row = execution_row(db, execution)
    assert row["status"] == "paused" and row["lease_expires_at"] is None
    assert row["finished_at"] is None
    assert [o["action"] for o in row["error"]["recovery_options"]] == ["resume"]
    assert body_status(db, execution)[1] == ["completed"] * 3
    assert body_status(db, execution)[2][:2] == ["completed", "waiting_checkpoint"]
    lines = [line["message"] for line in logs(db, execution)]
    assert any("Nobody answered the checkpoint" in m and "paused" in m for m in lines)
    assert any("browser was released" in m for m in lines)
    stream = events(db, execution)
    assert any(e["message"]["execution"]["status"] == "paused" for e in stream)
    assert stream[-1]["message"]["browser"]["isReady"] is False

    # a user's resume (the API's own use case) queues a new runner
    recorder = RecordingLauncher()
    previous = get_launcher()
    set_launcher(recorder)
    try:
        caller = service.Caller(execution.user.id, execution.user.claims)
        answer = await asyncio.to_thread(service.act, caller, execution.id,
                                         ActionRequest(action="resume"))
    finally:
        set_launcher(previous)
    assert answer["delivered"] == "launched" and answer["status"] == "queued"
    [(_, token)] = recorder.launched
    resumed = Execution(execution.id, token, execution.user, execution.document_id)
    runner = asyncio.create_task(run_engine(settings, db, resumed))
    await answer_each_again(db, execution, skip_first=2)
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "completed"
    assert execution_row(db, execution)["error"] is None
    assert body_status(db, execution) == {i: ["completed"] * 3 for i in (1, 2, 3)}
    # item 1 was not run again: one completion line per step of it
    opened = [line for line in logs(db, execution)
              if line["message"] == "Step completed: Open the item's page"]
    assert len(opened) == 3


async def time_runs_out(db: Database, execution: Execution, *, index: int) -> None:
    """What the sweeper writes when a checkpoint's time is up (aef.service.sweep), without
    waiting for the clock: the runner then applies the default action."""
    def probe() -> dict[str, Any] | None:
        rows = checkpoints(db, execution)
        return rows[index] if len(rows) > index and rows[index]["status"] == "pending" else None
    row = await eventually(probe, what=f"checkpoint {index + 1}")
    assert row["default_action"] == "pause"
    with db.as_service() as conn:
        conn.execute("update aef_checkpoints set status = 'expired', response ="
                     " jsonb_build_object('defaultAction', default_action, 'by', 'timeout')"
                     " where id = %s", (row["id"],))


async def answer_each_again(db: Database, execution: Execution, *, skip_first: int,
                            count: int = 2) -> None:
    """Approve `count` checkpoints that open after the first `skip_first` ones."""
    for index in range(skip_first, skip_first + count):
        def probe(index: int = index) -> dict[str, Any] | None:
            rows = checkpoints(db, execution)
            return rows[index] if len(rows) > index and rows[index]["status"] == "pending" \
                else None
        await eventually(probe, what=f"checkpoint {index + 1}")
        answer_checkpoint(db, execution, "approved")


async def test_skip_outside_a_loop_skips_the_unit_it_covers(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    """One checkpoint before a unit (fill + save); skip leaves the whole unit out and goes on."""
    unit = before_step("Save the note?", default="pause")
    unit["covers"] = ["note", "save"]
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=7"}]),
        task("note", [{"type": "fill", "selector": "#note", "value": "{{text}}"}],
             label="Write the note", checkpoint=unit, risky=True),
        task("save", [{"type": "click", "selector": "#go"}], label="Save it", risky=True),
        task("after", [{"type": "verify", "selector": "#title", "value": "Page 7"}]),
    ]
    execution = new_execution(plan, config=FAST, variables={"text": "Hello"})
    runner = asyncio.create_task(run_engine(settings, db, execution))
    await answer_each(db, execution, ["skipped"])
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "completed"
    assert {k[0]: s["status"] for k, s in step_rows(db, execution).items()} == {
        "open": "completed", "note": "skipped", "save": "skipped", "after": "completed"}
    [checkpoint] = checkpoints(db, execution)
    # one checkpoint for the unit: its preview lists both steps, the value filled in
    assert [(a["stepId"], a["kind"], a["value"]) for a in checkpoint["preview"]["actions"]] \
        == [("note", "fill", "Hello"), ("save", "click", None)]
    assert all(a["target"]["resolved"] for a in checkpoint["preview"]["actions"])
    meanings = {c["response"]: c["meaning"] for c in checkpoint["choices"]}
    assert meanings["approve"] == "Run this step and the 1 step(s) it covers (Save it)"
    assert meanings["skip"] == "Skip this step and the steps it covers and go on"


async def test_a_resume_within_the_grace_period_asks_again_in_the_same_browser(
        db: Database, settings: Settings, site: Site, new_execution: Any) -> None:
    execution = new_execution(loop_plan(site.base_url, default="pause"), config=FAST,
                              variables={"items": ITEMS[:1]})
    patient = settings.model_copy(update={"checkpoint_pause_grace_seconds": 120.0})
    runner = asyncio.create_task(run_engine(patient, db, execution))
    await time_runs_out(db, execution, index=0)
    await status_becomes(db, execution, "paused")
    assert execution_row(db, execution)["lease_expires_at"] is not None  # the runner holds on
    send_command(db, execution, "resume")
    await answer_each_again(db, execution, skip_first=1, count=1)
    outcome = await asyncio.wait_for(runner, 60)

    assert outcome.status == "completed"
    assert [c["status"] for c in checkpoints(db, execution)] == ["expired", "approved"]
    assert body_status(db, execution)[1] == ["completed"] * 3
    assert any("asking again" in line["message"] for line in logs(db, execution))
