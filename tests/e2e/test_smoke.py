"""`aef smoke` against `aef dev`: the deployment check passes on the local stack, step by step,
and fails clearly (with the run it started stopped) when something is wrong."""

from __future__ import annotations

import re

from tests.e2e.conftest import RunningStack, aef

STEPS = ["transform", "execute", "live", "logs", "stop"]


def test_smoke_passes_every_step_against_the_local_stack(stack: RunningStack,
                                                         demo_token: str) -> None:
    result = aef(stack.state, "smoke", "--api", stack.info.api_url, "--token", demo_token,
                 "--page", f"{stack.url}/mail/login", "--timeout", "90", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr + stack.log_tail()
    lines = result.stdout.splitlines()
    reported = [m.group(1) for line in lines if (m := re.match(r"^ok\s+(\w+)\s", line))]
    assert reported == STEPS, result.stdout
    live = next(line for line in lines if line.startswith("ok   live"))
    assert "waiting_checkpoint" in live and "page opened" in live
    assert "acknowledged" in next(line for line in lines if line.startswith("ok   stop"))
    assert lines[-1].startswith("smoke: OK")
    assert demo_token not in result.stdout + result.stderr


def test_smoke_reports_the_failing_step(stack: RunningStack) -> None:
    result = aef(stack.state, "smoke", "--api", stack.info.api_url, "--token", "not-a-jwt",
                 timeout=60)
    assert result.returncode == 1
    assert re.search(r"^FAIL transform\s+401 invalid_token", result.stdout, re.M), result.stdout
    assert "smoke: FAILED after 0 of 5 steps" in result.stdout
