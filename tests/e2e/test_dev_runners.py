"""`aef dev` with AEF_DEV_RUNNER=process: a subprocess per execution instead of the warm pool
worker (the default, checked on the shared stack's demo run in test_demo.py). The demo runs to
the end on it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import (
    RunningStack,
    dev_stack,
    run_demo,
    task_arn_of,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEMO_TIMEOUT_SECONDS = 600


@pytest.fixture()
def process_stack() -> Iterator[RunningStack]:
    with dev_stack(env={"AEF_DEV_RUNNER": "process"}) as running:
        yield running


@pytest.mark.timeout(DEMO_TIMEOUT_SECONDS + 180)
def test_with_aef_dev_runner_process_each_execution_gets_its_own_runner(
        process_stack: RunningStack) -> None:
    assert not (process_stack.state.logs / "pool-worker.log").exists()
    run = run_demo(process_stack, DEMO_TIMEOUT_SECONDS)
    assert run.returncode == 0, run.output[-4000:]
    assert f"Execution   {run.execution_id}: completed" in run.output, run.output[-4000:]
    execution_id = run.execution_id
    assert re.fullmatch(r"local:\d+", task_arn_of(process_stack, execution_id))
    log = (process_stack.state.logs / f"runner-{execution_id}.log").read_text(errors="replace")
    assert "execution" in log.lower()
