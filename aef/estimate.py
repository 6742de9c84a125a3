"""How long a run of the plan takes, in seconds (`estimatedDuration` of the transform).

Calibrated on measured runs of the demo workflow through the local stack (the real runner and
Chromium against the demo site; tests/fixtures/measurements/demo-run.json keeps the figures):
each action kind costs its mean measured time, each step run a fixed overhead (its state
writes, screenshot and live update), a container or decision a smaller one, and a run the
start of its browser. A loop counts min(maxIterations, 5) iterations and a decision its longer
branch, so the estimate leans high. A manual step counts the minute a person is expected to
take; time spent waiting for an answer at a checkpoint is not counted.
"""

from __future__ import annotations

import math

from aef.models import Action, PlanStep

MAX_ESTIMATE_SECONDS = 7 * 24 * 3600

# Mean seconds per action in the measured runs (rounded); upload and download were not measured
# and are set like an `act`, `type`/`select`/`check` like a `fill`, `scroll` like a `click`.
ACTION_SECONDS: dict[str, float] = {
    "navigate": 0.4,
    "click": 0.45,
    "fill": 0.25,
    "type": 0.3,
    "select": 0.3,
    "check": 0.25,
    "uncheck": 0.25,
    "press": 0.4,
    "scroll": 0.45,
    "wait": 0.15,
    "extract": 0.15,
    "verify": 0.2,
    "upload": 1.0,
    "download": 1.0,
    "act": 1.0,  # grounded on the page at run time
}
STEP_SECONDS = 0.55  # per run of a task: state writes, screenshot, live update
CONTAINER_SECONDS = 0.3  # per run of a compound, loop or decision
START_SECONDS = 5.0  # launching the browser and the first page load
GROUNDED_SECONDS = 1.0  # a step resolved from its instruction, like an `act`
RESOLVER_SECONDS = 3.0  # a computation by the resolver (an LLM call)
MANUAL_SECONDS = 60.0  # a person does the step
ASSUMED_ITERATIONS = 5
MAX_PLAIN_WAIT_SECONDS = 60.0


def estimate_seconds(plan: list[PlanStep]) -> int:
    if not plan:
        return 0
    total = START_SECONDS + sum(_duration(s) for s in plan)
    return min(MAX_ESTIMATE_SECONDS, math.ceil(total))


def _duration(step: PlanStep) -> float:
    if step.method == "manual":
        own = MANUAL_SECONDS
    elif step.method == "resolver":
        own = RESOLVER_SECONDS
    elif step.actions:
        own = sum(_action_seconds(a) for a in step.actions)
    elif step.method == "grounded":
        own = GROUNDED_SECONDS
    else:
        own = 0.0
    container = step.kind in ("compound", "loop", "decision")
    own += CONTAINER_SECONDS if container else STEP_SECONDS
    inner = sum(_duration(c) for c in step.children)
    if step.loop is not None:
        inner *= min(step.loop.max_iterations, ASSUMED_ITERATIONS)
    if step.decision is not None:
        inner += max(
            sum(_duration(s) for s in step.decision.yes),
            sum(_duration(s) for s in step.decision.no),
        )
    return min(float(MAX_ESTIMATE_SECONDS), own + inner)


def _action_seconds(action: Action) -> float:
    """A wait with nothing to wait for sleeps its timeout; other actions their mean."""
    plain_wait = not (action.selector or action.url_contains or action.state)
    if action.type == "wait" and plain_wait and action.timeout_ms is not None:
        return min(action.timeout_ms / 1000, MAX_PLAIN_WAIT_SECONDS)
    return ACTION_SECONDS[action.type]
