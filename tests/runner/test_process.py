"""`python -m runner` as a real subprocess: a stop mid-run, and a kill -9 mid-step.

These are the two cases an in-process engine cannot prove: that the process ends with its
Chromium gone, and that what was committed before a crash stays committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aef.db import Database
from aef.settings import Settings
from runner.browser import kill_process_tree, process_alive
from tests.runner.helpers import (
    Execution,
    eventually,
    execution_row,
    logs,
    request_stop,
    resume_execution,
    run_engine,
    status_becomes,
    step_rows,
    task,
)
from tests.runner.pages import Site

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def runner_env(settings: Settings, execution: Execution) -> dict[str, str]:
    """What the launcher gives a runner: ids and token in the environment, settings as AEF_*."""
    env = dict(os.environ)
    env.update({
        "AEF_EXECUTION_ID": execution.id,
        "AEF_RUNNER_TOKEN": execution.token,
        "DATABASE_URL": settings.database_url,
        "AEF_ALLOW_LOOPBACK": "true",
        "AEF_CHROMIUM_PATH": settings.chromium_path or "/usr/bin/chromium",
        "AEF_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "AEF_SCREENSHOT_BUCKET": settings.screenshot_bucket,
        "AEF_HEARTBEAT_SECONDS": "1",
        "AEF_LEASE_SECONDS": "10",
        "AEF_AUTO_RETRY_DELAY_SECONDS": "0.2",
        "AEF_WORK_DIR": settings.work_dir,
    })
    return env


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    """Start runners; whatever is still alive at the end is killed with its children."""
    started: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, execution: Execution) -> subprocess.Popen[bytes]:
        out = (tmp_path / f"runner-{len(started)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "runner"], cwd=ROOT,
                                env=runner_env(settings, execution), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            kill_process_tree(proc.pid)
            proc.wait(10)


def browser_pid(db: Database, execution: Execution) -> int:
    """The runner logs its Chromium's pid (debug) when the browser is ready."""
    for line in logs(db, execution):
        if line["message"] == "Browser ready" and line["details"]:
            return int(line["details"]["pid"])
    raise AssertionError("no 'Browser ready' log line")


async def test_stop_cuts_the_current_action_short(
        db: Database, settings: Settings, site: Site, new_execution: Any, spawn: Any) -> None:
    """A stop does not wait for the action in progress (a 60 s wait here): it is cancelled,
    the browser closed, `cancelled` written. bench_stop.py measures how fast."""
    plan = [
        task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
        task("long", [{"type": "wait", "timeoutMs": 60_000},
                      {"type": "navigate", "url": f"{site.base_url}/page?n=2"}]),
        task("after", [{"type": "navigate", "url": f"{site.base_url}/page?n=3"}]),
    ]
    execution = new_execution(plan, config={"stepTimeout": 90})
    proc = spawn(settings, execution)

    def long_running() -> dict[str, Any] | None:
        step = step_rows(db, execution).get(("long", 0))
        return step if step and step["status"] == "running" else None

    long_step = await eventually(long_running, within=30, what="the long step to run")
    pid = browser_pid(db, execution)
    assert process_alive(pid)
    request_stop(db, execution)

    row = await status_becomes(db, execution, "cancelled", within=30)
    assert not process_alive(pid)  # the browser was closed before `cancelled` was written
    assert row["finished_at"] - long_step["started_at"] < timedelta(seconds=30), \
        "the 60 s wait was cut short"
    assert await asyncio.to_thread(proc.wait, 15) == 0

    steps = step_rows(db, execution)
    assert steps[("open", 0)]["status"] == "completed"
    assert steps[("long", 0)]["status"] == "cancelled"
    assert ("after", 0) not in steps
    assert not any("page?n=2" in line["message"] for line in logs(db, execution))


async def test_kill_9_mid_step_loses_no_flushed_log_line_and_resumes(
        db: Database, settings: Settings, site: Site, new_execution: Any, spawn: Any) -> None:
    plan = [task(f"s{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                           {"type": "wait", "timeoutMs": 700},
                           {"type": "click", "selector": "#go"}]) for i in range(5)]
    execution = new_execution(plan, config={"stepTimeout": 5})
    proc = spawn(settings, execution)

    def mid_step() -> list[dict[str, Any]] | None:
        steps = step_rows(db, execution)
        completed = [k for k, s in steps.items() if s["status"] == "completed"]
        running = [k for k, s in steps.items() if s["status"] == "running"]
        lines = logs(db, execution)
        # inside a running step, after at least one of its action lines was flushed
        if len(completed) >= 2 and running and lines[-1]["step_id"] == running[0][0] \
                and lines[-1]["category"] == "action":
            return lines
        return None

    await eventually(mid_step, within=30, interval=0.02, what="a step mid-way")
    pid = browser_pid(db, execution)
    before = [line["id"] for line in logs(db, execution)]
    os.kill(proc.pid, signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)
    await asyncio.sleep(0.3)
    after = [line["id"] for line in logs(db, execution)]
    assert after[:len(before)] == before  # every flushed line is still there
    # the runner never wrote again after its death (whatever it had committed by then stays)
    assert after == [line["id"] for line in logs(db, execution)]
    row = execution_row(db, execution)
    assert row["status"] == "running"  # only the lease knows it died
    if process_alive(pid):  # orphaned Chromium: a real task's container would take it down
        kill_process_tree(pid)

    # The sweeper (lead's) notices the expired lease; a user's resume re-queues the execution.
    from aef import service

    with db.as_service() as conn:
        conn.execute("update aef_executions set lease_expires_at = now() - interval '1 second'"
                     " where id = %s", (execution.id,))
    assert service.sweep(db=db)["runnersLost"] >= 1
    assert execution_row(db, execution)["status"] == "failed"
    before = step_rows(db, execution)
    completed_before = {k for k, s in before.items() if s["status"] == "completed"}
    interrupted = [k for k, s in before.items() if s["status"] == "failed"]
    assert len(completed_before) >= 2 and len(interrupted) == 1
    resumed = resume_execution(db, execution)
    outcome = await asyncio.wait_for(run_engine(settings, db, resumed), 60)

    assert outcome.status == "completed"
    steps = step_rows(db, resumed)
    assert len(steps) == 5 and all(s["status"] == "completed" for s in steps.values())
    for key in completed_before:  # not run again
        assert steps[key]["attempts"] == before[key]["attempts"]
        assert steps[key]["finished_at"] == before[key]["finished_at"]
    assert steps[interrupted[0]]["attempts"] == before[interrupted[0]]["attempts"] + 1
    assert execution_row(db, resumed)["progress"] == 100


async def test_sigterm_unwinds_and_leaves_a_resumable_failure(
        db: Database, settings: Settings, site: Site, new_execution: Any, spawn: Any) -> None:
    plan = [task("open", [{"type": "navigate", "url": f"{site.base_url}/page?n=1"}]),
            # long enough to be seen running: its start is written in the background, after
            # the first step's screenshot upload, which a busy machine makes slow
            task("long", [{"type": "wait", "timeoutMs": 30_000}]),
            task("after", [{"type": "navigate", "url": f"{site.base_url}/page?n=2"}])]
    execution = new_execution(plan, config={"stepTimeout": 60})
    proc = spawn(settings, execution)

    def long_running() -> dict[str, Any] | None:
        step = step_rows(db, execution).get(("long", 0))
        return step if step and step["status"] == "running" else None

    await eventually(long_running, within=30, what="the long step to run")
    pid = browser_pid(db, execution)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 15) == 1
    assert not process_alive(pid)
    row = execution_row(db, execution)
    assert row["status"] == "failed" and row["error"]["message"] == "The runner was terminated"
    assert [o["action"] for o in row["error"]["recovery_options"]] == ["resume"]
    assert step_rows(db, execution)[("long", 0)]["status"] == "failed"


def test_a_runner_without_its_settings_or_with_a_wrong_token_exits_2(
        db: Database, settings: Settings, new_execution: Any) -> None:
    execution = new_execution([task("s", [{"type": "wait", "timeoutMs": 1}])])
    env = runner_env(settings, execution)
    del env["AEF_RUNNER_TOKEN"]
    missing = subprocess.run([sys.executable, "-m", "runner"], cwd=ROOT, env=env,
                             capture_output=True, timeout=60)
    assert missing.returncode == 2 and b"AEF_RUNNER_TOKEN is not set" in missing.stderr

    env = runner_env(settings, execution) | {"AEF_RUNNER_TOKEN": "not-the-token"}
    wrong = subprocess.run([sys.executable, "-m", "runner"], cwd=ROOT, env=env,
                           capture_output=True, timeout=60)
    assert wrong.returncode == 2
    assert b"not-the-token" not in wrong.stderr + wrong.stdout
    row = execution_row(db, execution)
    assert row["status"] == "queued" and row["runner_id"] is None
