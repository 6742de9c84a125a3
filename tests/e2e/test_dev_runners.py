"""`aef dev` with AEF_DEV_RUNNER=process: a subprocess per execution instead of the warm pool
worker (the default, checked on the shared stack's demo run in test_demo.py). The demo runs to
the end on it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import psycopg
import pytest

from tests.e2e.conftest import (
    RunningStack,
    aef,
    drop_database,
    new_database_name,
    new_state_dir,
    start_dev,
    stop_dev,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEMO_TIMEOUT_SECONDS = 600


def run_demo(stack: RunningStack) -> tuple[str, str]:
    """`aef demo --yes` to the end: (execution id, the execution's task_arn)."""
    result = aef(stack.state, "demo", "--yes", "--plain", "--timeout",
                 str(DEMO_TIMEOUT_SECONDS - 60), timeout=DEMO_TIMEOUT_SECONDS)
    output = result.stdout + result.stderr
    found = re.search(r"Execution ([0-9a-f-]{36}) \w+; live on channel", output)
    assert found, f"no execution started:\n{output[-4000:]}\n{stack.log_tail()}"
    assert result.returncode == 0, output[-4000:]
    assert f"Execution   {found[1]}: completed" in output, output[-4000:]
    with psycopg.connect(stack.info.database_url) as conn:
        row = conn.execute("select task_arn from aef_executions where id = %s",
                           (found[1],)).fetchone()
    assert row is not None
    return found[1], str(row[0])


@pytest.fixture()
def process_stack() -> Iterator[RunningStack]:
    state, database = new_state_dir(), new_database_name()
    try:
        running = start_dev(state, database, env={"AEF_DEV_RUNNER": "process"})
        yield running
        stop_dev(running.process)
    finally:
        drop_database(database)
        shutil.rmtree(state.root, ignore_errors=True)


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 180)
def test_with_aef_dev_runner_process_each_execution_gets_its_own_runner(
        process_stack: RunningStack) -> None:
    assert not (process_stack.state.logs / "pool-worker.log").exists()
    execution_id, task_arn = run_demo(process_stack)
    assert re.fullmatch(r"local:\d+", task_arn), task_arn
    log = (process_stack.state.logs / f"runner-{execution_id}.log").read_text(errors="replace")
    assert "execution" in log.lower()
