"""The runner pool: `python -m runner --pool` workers serving many executions.

Real PostgreSQL (runner login, RLS), real Chromium, real worker processes. What each test
proves is in its name; the least-privilege test needs no browser.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from aef import service
from aef.db import Database
from aef.errors import AefError
from aef.settings import Settings
from aef.store import api as api_store
from aef.store import runner as runner_store
from runner.browser import kill_process_tree, process_alive
from tests.integration.factories import admin_connection
from tests.runner.helpers import (
    Execution,
    dump,
    eventually,
    execution_row,
    logs,
    request_stop,
    status_becomes,
    step_rows,
    task,
)
from tests.runner.pages import Site
from tests.runner.test_process import ROOT, browser_pid, runner_env

BROWSER = pytest.mark.browser


def dispatch(db: Database, execution: Execution) -> bool:
    """What the launcher does first (aef.launcher.PoolLauncher)."""
    with db.as_service() as conn:
        return api_store.dispatch_to_pool(conn, execution.id)


async def dispatched(db: Database, execution: Execution, within: float = 60) -> None:
    """Dispatch as soon as a live worker has a free slot."""
    await eventually(lambda: dispatch(db, execution), within=within, interval=0.1,
                     what="a free pool slot")


def forget_workers(db: Database) -> None:
    with admin_connection(db) as conn:  # the tables' owner: no AEF role may touch them
        conn.execute("delete from aef_private.runner_pool_workers")
        conn.execute("delete from aef_private.runner_pool_dispatch")


@pytest.fixture
def workers(tmp_path: Path, db: Database) -> Iterator[Any]:
    """Start pool worker processes; at the end, kill what is left (and their browsers)."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    forget_workers(db)

    def start(settings: Settings, slots: int, **extra: str) -> subprocess.Popen[bytes]:
        env = runner_env(settings, Execution("", "", None, ""))  # type: ignore[arg-type]
        for name in ("AEF_EXECUTION_ID", "AEF_RUNNER_TOKEN"):
            env.pop(name)
        env.update({"AEF_POOL_SLOTS": str(slots), **extra})
        path = tmp_path / f"worker-{len(started)}.log"
        with path.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "runner", "--pool"], cwd=ROOT,
                                    env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        started.append((proc, path))
        return proc

    start.logs = lambda proc: next(p for w, p in started if w is proc).read_text()  # type: ignore[attr-defined]
    yield start
    for proc, _ in started:
        if proc.poll() is None:
            kill_process_tree(proc.pid)
            proc.wait(10)
    forget_workers(db)


def live_slots(db: Database) -> int:
    with db.as_service() as conn:
        row = conn.execute("select total_slots from aef_private.pool_demand()").fetchone()
    return int(row["total_slots"])


async def worker_ready(db: Database, slots: int) -> None:
    await eventually(lambda: live_slots(db) >= slots, within=30, what="the worker to register")


def isolation_plan(site: Site, i: int) -> list[dict[str, Any]]:
    return [
        task("cookie", [{"type": "navigate", "url": f"{site.base_url}/setcookie?v=tag{i}"},
                        {"type": "wait", "timeoutMs": 800},  # the others set theirs meanwhile
                        {"type": "navigate", "url": f"{site.base_url}/cookies"},
                        {"type": "extract", "selector": "#cookies", "variable": "seen"}]),
        task("login", [{"type": "navigate", "url": f"{site.base_url}/login"},
                       {"type": "fill", "selector": "#pw", "value": "{{pw}}"},
                       {"type": "click", "selector": "#signin"},
                       {"type": "extract", "selector": "#echo", "variable": "echo"}]),
    ]


@BROWSER
async def test_eight_executions_through_one_worker_of_four_slots_stay_isolated(
        db: Database, settings: Settings, site: Site, new_execution: Any, workers: Any,
        unique: str) -> None:
    worker = workers(settings, 4)
    await worker_ready(db, 4)
    secrets = [f"pw-{unique}-{i}-Zq9" for i in range(8)]
    executions = [new_execution(isolation_plan(site, i), config={"stepTimeout": 20},
                                secret_values={"pw": secrets[i]}) for i in range(8)]
    for execution in executions:  # the 5th waits for a free slot: the pool never overfills
        await dispatched(db, execution)
    for execution in executions:
        await status_becomes(db, execution, "completed", within=120)

    pids = {browser_pid(db, execution) for execution in executions}
    assert len(pids) == 8  # a Chromium process of its own for each execution
    for i, execution in enumerate(executions):
        row = execution_row(db, execution)
        assert row["variables"]["seen"] == f"tag=tag{i}"  # no other execution's cookie
        assert row["task_arn"].startswith("pool:")
        own = dump(logs(db, execution))
        assert "••••••" in own  # its own secret was echoed by the page, and masked
        assert not any(secret in own + dump(row) for secret in secrets)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 60) == 0
    process_log = workers.logs(worker)
    assert not any(secret in process_log for secret in secrets)
    lines = [json.loads(line) for line in process_log.splitlines() if line.startswith("{")]
    for execution in executions:  # every line about an execution names that execution
        mine = [line for line in lines if line.get("executionId") == execution.id]
        assert any(line["message"] == "execution ended: completed" for line in mine)
    assert all(process_alive(pid) is False for pid in pids)


@BROWSER
async def test_a_stop_of_one_execution_leaves_the_others_running(
        db: Database, settings: Settings, site: Site, new_execution: Any, workers: Any) -> None:
    workers(settings, 2)
    await worker_ready(db, 2)
    slow = [task(f"s{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                          {"type": "wait", "timeoutMs": 1500}]) for i in range(3)]
    stopped = new_execution([task("long", [{"type": "wait", "timeoutMs": 60_000}])],
                            config={"stepTimeout": 90})
    other = new_execution(slow, config={"stepTimeout": 20})
    await dispatched(db, stopped)
    await dispatched(db, other)
    await eventually(lambda: (step_rows(db, stopped).get(("long", 0)) or {}).get("status")
                     == "running", within=60, what="the long step")
    await eventually(lambda: step_rows(db, other), within=60, what="the other to start")
    request_stop(db, stopped)
    await status_becomes(db, stopped, "cancelled", within=15)
    assert execution_row(db, other)["status"] == "running"
    await status_becomes(db, other, "completed", within=60)
    assert all(s["status"] == "completed" for s in step_rows(db, other).values())
    assert all(s["attempts"] == 1 for s in step_rows(db, other).values())


@BROWSER
async def test_kill_9_of_a_worker_resumes_its_executions_on_another(
        db: Database, settings: Settings, site: Site, new_execution: Any, workers: Any) -> None:
    first = workers(settings, 2)
    await worker_ready(db, 2)
    plan = [task(f"s{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                           {"type": "wait", "timeoutMs": 700}]) for i in range(5)]
    executions = [new_execution(plan, config={"stepTimeout": 20}) for _ in range(2)]
    for execution in executions:
        await dispatched(db, execution)

    def two_steps_done(execution: Execution) -> bool:
        return sum(s["status"] == "completed" for s in step_rows(db, execution).values()) >= 2

    for execution in executions:
        await eventually(lambda e=execution: two_steps_done(e), within=60, what="2 steps")
    pids = [browser_pid(db, execution) for execution in executions]
    os.killpg(first.pid, signal.SIGKILL)
    await asyncio.to_thread(first.wait, 10)
    for pid in pids:  # orphaned Chromium: a real task's container would take it down
        if process_alive(pid):
            kill_process_tree(pid)
    before = {e.id: step_rows(db, e) for e in executions}
    forget_workers(db)  # the dead worker's row would only age out
    with db.as_service() as conn:  # its leases run out (the test does not wait 10 s)
        conn.execute("update aef_executions set lease_expires_at = now() - interval '1 second'"
                     " where id = any(%s)", ([e.id for e in executions],))

    workers(settings, 2)
    await worker_ready(db, 2)
    result = service.sweep(db=db)
    assert result["runnersLost"] >= 2 and result["resumedOnPool"] == 2
    for execution in executions:
        await status_becomes(db, execution, "completed", within=90)
        steps = step_rows(db, execution)
        assert len(steps) == 5 and all(s["status"] == "completed" for s in steps.values())
        for key, step in before[execution.id].items():
            if step["status"] == "completed":  # not run again
                assert steps[key]["attempts"] == step["attempts"]
                assert steps[key]["finished_at"] == step["finished_at"]
        assert execution_row(db, execution)["progress"] == 100


@BROWSER
async def test_sigterm_drains_then_hands_back_what_is_left(
        db: Database, settings: Settings, site: Site, new_execution: Any, workers: Any) -> None:
    first = workers(settings, 2, AEF_POOL_DRAIN_SECONDS="12")
    await worker_ready(db, 2)
    short = new_execution([task(f"s{i}", [{"type": "navigate",
                                          "url": f"{site.base_url}/page?n={i}"},
                                         {"type": "wait", "timeoutMs": 600}])
                           for i in range(3)], config={"stepTimeout": 20})
    long = new_execution([task("open", [{"type": "navigate", "url": f"{site.base_url}/page"}]),
                          task("long", [{"type": "wait", "timeoutMs": 25_000}])],
                         config={"stepTimeout": 60})
    await dispatched(db, long)
    await eventually(lambda: (step_rows(db, long).get(("long", 0)) or {}).get("status")
                     == "running", within=60, what="the long step")
    await dispatched(db, short)
    await eventually(lambda: step_rows(db, short), within=60, what="the short one to start")
    first.send_signal(signal.SIGTERM)
    assert not dispatch(db, new_execution([task("x", [{"type": "wait", "timeoutMs": 1}])]))
    assert await asyncio.to_thread(first.wait, 60) == 0
    assert execution_row(db, short)["status"] == "completed"  # finished within the grace
    row = execution_row(db, long)
    assert row["status"] == "running" and row["lease_expires_at"] is not None
    assert any("handed back" in line["message"] for line in logs(db, long))

    workers(settings, 1)
    await worker_ready(db, 1)
    assert service.sweep(db=db)["resumedOnPool"] == 1
    await status_becomes(db, long, "completed", within=60)
    steps = step_rows(db, long)
    assert steps[("open", 0)]["attempts"] == 1 and steps[("long", 0)]["attempts"] == 2


def test_a_worker_acts_only_for_the_executions_it_claimed(
        db: Database, new_execution: Any) -> None:
    """No browser: two registered workers, one dispatched execution each."""
    forget_workers(db)
    plan = [task("s", [{"type": "wait", "timeoutMs": 1}])]
    one, two = new_execution(plan), new_execution(plan)
    undispatched = new_execution(plan)
    try:
        assert not dispatch(db, one)  # no live worker: the launcher starts a task instead
        with db.as_runner("", "") as conn:
            runner_store.pool_heartbeat(conn, "pool:w1", 1, 0, False)
            runner_store.pool_heartbeat(conn, "pool:w2", 1, 0, False)
        assert dispatch(db, one) and dispatch(db, two)
        assert not dispatch(db, undispatched)  # both slots are spoken for
        with db.as_runner("", "") as conn:
            first = runner_store.claim_for_pool(conn, "pool:w1")
            second = runner_store.claim_for_pool(conn, "pool:w2")
            assert runner_store.claim_for_pool(conn, "pool:w1") is None  # nothing else dispatched
            assert runner_store.claim_for_pool(conn, "pool:unregistered") is None
        assert first is not None and second is not None
        (mine, my_token), (theirs, their_token) = first, second
        assert {mine, theirs} == {one.id, two.id}
        with db.as_runner(mine, my_token) as conn:
            assert runner_store.get_execution(conn, mine) is not None
            assert runner_store.get_execution(conn, theirs) is None  # RLS: not claimed by it
            assert conn.execute("update aef_executions set status = 'failed' where id = %s",
                                (theirs,)).rowcount == 0
            assert runner_store.get_steps(conn, theirs) == []
            assert runner_store.get_secrets(conn, theirs) == {}
        with db.as_runner(theirs, my_token) as conn:  # its token names one execution only
            assert runner_store.get_execution(conn, theirs) is None
        with db.as_runner(theirs, their_token) as conn:  # the other worker's own token does
            assert runner_store.get_execution(conn, theirs) is not None
        with db.as_runner("", "") as conn:  # a draining worker claims nothing
            runner_store.pool_heartbeat(conn, "pool:w1", 1, 0, True)
            assert runner_store.claim_for_pool(conn, "pool:w1") is None
        with pytest.raises((AefError, psycopg.Error)), db.as_user(one.user.claims) as conn:
            conn.execute("select * from aef_private.claim_for_pool('pool:w2')")
        with pytest.raises((AefError, psycopg.Error)), db.as_user(one.user.claims) as conn:
            conn.execute("select aef_private.pool_heartbeat('pool:evil', 100, 0, false)")
        with pytest.raises((AefError, psycopg.Error)), db.as_runner("", "") as conn:
            conn.execute("select aef_private.dispatch_to_pool(%s)", (undispatched.id,))
    finally:
        forget_workers(db)


def test_the_launcher_uses_the_pool_while_it_has_room_then_run_task(
        db: Database, new_execution: Any) -> None:
    """No browser: the worker is only registered; RunTask answers through botocore's Stubber."""
    import boto3
    from botocore.stub import Stubber

    from aef.launcher import EcsLauncher, PoolLauncher

    forget_workers(db)
    ecs = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    fallback = EcsLauncher(Settings(ecs_cluster="aef", ecs_task_definition="aef-runner",
                                    ecs_subnets=["subnet-1"], ecs_security_groups=["sg-1"]),
                           client=ecs)
    launcher = PoolLauncher(fallback, database=lambda: db)
    plan = [task("s", [{"type": "wait", "timeoutMs": 1}])]
    arn = "arn:aws:ecs:us-east-1:123456789012:task/aef/0123456789abcdef0123456789abcdef"
    try:
        with db.as_runner("", "") as conn:
            runner_store.pool_heartbeat(conn, "pool:w1", 1, 0, False)
        with Stubber(ecs) as stub:  # no answer queued: a RunTask here would raise
            assert launcher.launch(new_execution(plan).id, "unused").task_arn == "pool:"
            stub.add_response("run_task", {"tasks": [{"taskArn": arn}], "failures": []})
            assert launcher.launch(new_execution(plan).id, "t").task_arn == arn  # pool full
            stub.assert_no_pending_responses()
            assert launcher.stop("pool:pool:w1", "stop") is False  # never a shared task
            stub.add_response("stop_task", {"task": {"taskArn": arn}})
            assert launcher.stop(arn, "stop") is True
    finally:
        forget_workers(db)
