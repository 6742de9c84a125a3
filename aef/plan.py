"""Walking a plan tree: the one place that knows where a step's nested steps live.

A step's body is its `children` (compound, loop) and, for a decision, its `yes` then `no`
branch. The transform, the API (step selection, inputs) and the runner all walk plans with
these helpers, so a new place to nest steps is added here once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from aef.models import PlanStep


def nested(step: PlanStep) -> list[PlanStep]:
    """The steps directly below `step`, in plan order (children, then yes, then no)."""
    if step.decision is None:
        return list(step.children)
    return [*step.children, *step.decision.yes, *step.decision.no]


def walk(steps: Iterable[PlanStep]) -> Iterator[PlanStep]:
    """Every step of a plan tree, depth first in plan order."""
    stack = list(steps)[::-1]
    while stack:
        step = stack.pop()
        yield step
        stack.extend(reversed(nested(step)))


def all_ids(steps: Iterable[PlanStep]) -> list[str]:
    """Every step id of the plan, in plan order."""
    return [step.id for step in walk(steps)]


def find(steps: Iterable[PlanStep], step_id: str) -> PlanStep | None:
    """The step with id `step_id` anywhere in the tree, or None."""
    return next((step for step in walk(steps) if step.id == step_id), None)


def contains(step: PlanStep, step_id: str) -> bool:
    """Whether `step_id` is strictly below `step`."""
    return any(s.id == step_id for s in walk(nested(step)))


def selected_within(step: PlanStep, selected: Collection[str]) -> bool:
    """Whether `step` or anything below it is among the `selected` step ids."""
    return any(s.id in selected for s in walk([step]))


def selection_roots(steps: Iterable[PlanStep], selected: Collection[str]) -> set[str]:
    """The selected ids that no other selected step contains (each one's share of progress)."""
    roots: set[str] = set()

    def visit(level: Iterable[PlanStep]) -> None:
        for step in level:
            if step.id in selected:
                roots.add(step.id)
            else:
                visit(nested(step))

    visit(steps)
    return roots


def with_bodies(steps: Iterable[PlanStep], selected: Collection[str]) -> set[str]:
    """The selected ids plus every step below a selected one: selecting a compound, loop or
    decision selects its whole body (a container without its body would do nothing)."""
    chosen = set(selected)
    for step in walk(steps):
        if step.id in chosen:
            chosen.update(s.id for s in walk(nested(step)))
    return chosen


def parse_plan(document: Mapping[str, Any]) -> list[PlanStep]:
    """The plan of a stored AEF document (`aef.plan`); an empty list when it has none."""
    section = document.get("aef")
    plan = section.get("plan") if isinstance(section, Mapping) else None
    if not isinstance(plan, list):
        return []
    return [PlanStep.model_validate(step) for step in plan]
