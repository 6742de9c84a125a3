"""Fault d: the runner is SIGKILLed mid-step. Only its lease knows: once the lease expires the
sweeper fails the execution with resume options, every line the runner had flushed is still
there, and a resume through the API finishes the rest without running finished steps again.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from aef import service
from aef.db import Database
from tests.faults.checks import (
    assert_outbox_intact,
    assert_steps_journaled,
    blocking,
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

LEASE_SECONDS = 3


async def test_sigkill_mid_step_then_sweep_after_the_lease_then_resume(
        api: Any, db: Database, person: Person, site: Site, spawn: Any) -> None:
    launcher = spawn(AEF_LEASE_SECONDS=str(LEASE_SECONDS), AEF_HEARTBEAT_SECONDS="1")
    plan = [task(f"s{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                           {"type": "wait", "timeoutMs": 700},
                           {"type": "click", "selector": "#go"}]) for i in range(5)]
    document = create_document(db, person.user,
                               document=aef_document(plan, {"stepTimeout": 5}))
    reply = await blocking(api.call, "POST", "/api/aef/execute", person.token,
                           {"aefDocumentId": str(document["id"])})
    assert reply.status == 202 and reply.body["status"] == "queued", reply.body
    execution_id = reply.body["executionId"]
    proc = launcher.latest()

    def mid_step() -> list[dict[str, Any]] | None:
        steps = step_rows(db, execution_id)
        completed = [k for k, s in steps.items() if s["status"] == "completed"]
        running = [k for k, s in steps.items() if s["status"] == "running"]
        lines = log_lines(db, execution_id)
        # inside a running step, after one of its action lines was flushed
        if len(completed) >= 2 and running and lines[-1]["step_id"] == running[0] \
                and lines[-1]["category"] == "action":
            return lines
        return None

    await eventually(mid_step, within=40, interval=0.02, what="a step mid-way")
    os.killpg(proc.pid, signal.SIGKILL)  # the task dies with its Chromium, like a lost task
    assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL
    flushed = log_ids(db, execution_id)
    before = step_rows(db, execution_id)
    completed_before = {k for k, s in before.items() if s["status"] == "completed"}
    interrupted = {k for k, s in before.items() if s["status"] == "running"}
    assert len(completed_before) >= 2 and len(interrupted) == 1

    # the lease is still live: the sweeper leaves the execution alone
    lease_end = execution_row(db, execution_id)["lease_expires_at"]
    assert execution_row(db, execution_id)["status"] == "running"
    await asyncio.to_thread(service.sweep, db=db)
    assert execution_row(db, execution_id)["status"] == "running"

    def swept() -> dict[str, Any] | None:
        service.sweep(db=db)
        row = execution_row(db, execution_id)
        return row if row["status"] == "failed" else None

    row = await eventually(swept, within=LEASE_SECONDS + 5, interval=0.25,
                           what="the sweeper to notice the expired lease")
    assert row["updated_at"] >= lease_end, "failed only once the lease had run out"
    last_done = max(completed_before)
    assert row["error"]["message"] == ("The runner stopped responding; resume continues after "
                                       f"step {last_done}")
    assert [o["action"] for o in row["error"]["recovery_options"]] == ["resume", "retry", "stop"]
    after_sweep = step_rows(db, execution_id)
    assert {k for k, s in after_sweep.items() if s["status"] == "failed"} == interrupted
    assert log_ids(db, execution_id)[:len(flushed)] == flushed, "a flushed line was lost"
    live = await blocking(api.call, "GET", f"/api/aef/live/{execution_id}", person.token)
    assert live.body["message"]["type"] == "error"
    assert [o["action"] for o in live.body["message"]["error"]["recovery_options"]] \
        == ["resume", "retry", "stop"]

    resumed = await blocking(api.call, "POST", f"/api/aef/action/{execution_id}",
                             person.token, {"action": "resume"})
    assert resumed.status == 200, resumed.body
    assert resumed.body["status"] == "queued" and resumed.body["delivered"] == "launched"
    second = launcher.latest()
    assert second is not proc
    assert await asyncio.to_thread(second.wait, 60) == 0, launcher.output()

    row = execution_row(db, execution_id)
    assert row["status"] == "completed" and row["progress"] == 100
    steps = step_rows(db, execution_id)
    assert sorted(steps) == [f"s{i}" for i in range(5)]
    assert all(s["status"] == "completed" for s in steps.values())
    for key in completed_before:  # not run again
        assert steps[key]["attempts"] == before[key]["attempts"] == 1
        assert steps[key]["finished_at"] == before[key]["finished_at"]
    for key in interrupted:
        assert steps[key]["attempts"] == 2
    lines = log_lines(db, execution_id)
    assert [line["id"] for line in lines][:len(flushed)] == flushed
    assert sum(line["message"] == "Resuming execution" for line in lines) == 1
    assert_outbox_intact(db, execution_id)
    assert_steps_journaled(db, execution_id)
