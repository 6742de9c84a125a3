"""How long a plan keeps the browser busy, in seconds (`estimatedDuration` of the transform).

Per-action times, a loop counted as min(maxIterations, 5) iterations, the longer branch of
each decision; time spent waiting for a person is not counted, a manual step only for the
minute a person is expected to take.
"""

from __future__ import annotations

import math

from aef.models import Action, PlanStep

MAX_ESTIMATE_SECONDS = 7 * 24 * 3600

_ACTION_SECONDS: dict[str, float] = {
    "navigate": 3,
    "click": 1,
    "fill": 1,
    "type": 1.5,
    "select": 1,
    "check": 0.5,
    "uncheck": 0.5,
    "press": 0.5,
    "scroll": 1,
    "wait": 2,
    "extract": 4,
    "verify": 1,
    "upload": 3,
    "download": 3,
    "act": 4,
}
_GROUNDED_SECONDS = 8.0
_MANUAL_SECONDS = 60.0
_ASSUMED_ITERATIONS = 5


def estimate_seconds(plan: list[PlanStep]) -> int:
    return min(MAX_ESTIMATE_SECONDS, math.ceil(sum(_duration(s) for s in plan)))


def _duration(step: PlanStep) -> float:
    own: float
    if step.method == "manual":
        own = _MANUAL_SECONDS
    elif step.actions:
        own = sum(_action_seconds(a) for a in step.actions)
    elif step.method == "grounded":
        own = _GROUNDED_SECONDS
    else:
        own = 1.0 if step.kind == "decision" else 0.0
    inner = sum(_duration(c) for c in step.children)
    if step.loop is not None:
        inner *= min(step.loop.max_iterations, _ASSUMED_ITERATIONS)
    if step.decision is not None:
        inner += max(
            sum(_duration(s) for s in step.decision.yes),
            sum(_duration(s) for s in step.decision.no),
        )
    return min(float(MAX_ESTIMATE_SECONDS), own + inner)


def _action_seconds(action: Action) -> float:
    if action.type == "wait" and action.timeout_ms is not None and not action.url_contains:
        return min(action.timeout_ms / 1000, 5.0)
    return _ACTION_SECONDS[action.type]
