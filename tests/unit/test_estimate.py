"""The duration estimate against measured runs of the demo workflow (the real runner and Chromium
on the local stack; bench/estimate_calibration.py records tests/fixtures/measurements/)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from aef import estimate
from aef.models import Action, LoopSpec, PlanStep
from aef.transform import transform

ROOT = Path(__file__).resolve().parents[2]
MEASURED = json.loads((ROOT / "tests" / "fixtures" / "measurements" / "demo-run.json").read_text())
DEMO = ROOT / "local" / "demo" / "workflows" / "investor-crm-demo.json"
# The estimate leans high on purpose (every loop iteration takes the longer branch); within a
# factor of 1.5 of the median measured run either way.
FACTOR = 1.5


def test_the_demo_estimate_is_within_the_stated_factor_of_the_measured_run() -> None:
    estimated = transform(json.loads(DEMO.read_text())).estimated_duration_seconds
    actual = statistics.median(MEASURED["runs"])
    assert 1 / FACTOR <= estimated / actual <= FACTOR, (estimated, actual)


@pytest.mark.parametrize("kind", sorted(MEASURED["actions"]))
def test_action_times_are_the_measured_means(kind: str) -> None:
    measured = MEASURED["actions"][kind]["meanMs"] / 1000
    assert estimate.ACTION_SECONDS[kind] == pytest.approx(measured, rel=0.35, abs=0.05), kind


def test_step_overhead_is_the_measured_one() -> None:
    assert estimate.STEP_SECONDS == pytest.approx(MEASURED["stepOverheadMedianSeconds"], rel=0.2)


def step(step_id: str, **fields: Any) -> PlanStep:
    return PlanStep(id=step_id, label=step_id, kind=fields.pop("kind", "task"),
                    method=fields.pop("method", "automated"), **fields)


def test_a_plain_wait_counts_its_timeout_and_a_loop_at_most_five_items() -> None:
    sleep = step("sleep", actions=[Action(type="wait", timeout_ms=4000)])
    waits_for_page = step("wait", actions=[Action(type="wait", selector="#x", timeout_ms=9000)])
    one = estimate.estimate_seconds([sleep]) - estimate.estimate_seconds([waits_for_page])
    assert one == pytest.approx(4 - estimate.ACTION_SECONDS["wait"], abs=1)
    body = [step("click", actions=[Action(type="click", selector="#b")])]
    loop = step("loop", kind="compound", children=body,
                loop=LoopSpec(iterator="item", over="items", max_iterations=1000))
    per_item = estimate.ACTION_SECONDS["click"] + estimate.STEP_SECONDS
    expected = (estimate.START_SECONDS + estimate.CONTAINER_SECONDS
                + estimate.ASSUMED_ITERATIONS * per_item)
    assert estimate.estimate_seconds([loop]) == pytest.approx(expected, abs=1)


def test_an_empty_plan_takes_no_time() -> None:
    assert estimate.estimate_seconds([]) == 0
