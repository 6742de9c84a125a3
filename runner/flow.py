"""Control flow of one execution: the signals that unwind it, what its parts answer each
other, and how it ends (`Outcome`, the process exit code).

The answers are enums, not bare strings: a checkpoint's answer (`Answer`), what recovery
decided (`Recovery`), what happened between two actions (`Between`) and what a takeover does
once released (`AfterTakeover`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from aef.models import RecoveryPolicy

LOOP_STRIDE: Final = 10_000


# --- what a step run carries down the plan tree -------------------------------------------------
@dataclass
class StepRun:
    """What one step run carries down the tree."""

    iteration: int = 0
    scope: dict[str, Any] = field(default_factory=dict)
    recovery: RecoveryPolicy | None = None  # the innermost enclosing step's policy


def lookup(path: str, *scopes: Mapping[str, Any]) -> Any:
    """A dotted path (`email.id`, `emails.0.subject`) in the first scope that has its head;
    KeyError when no scope has it or the path leads nowhere."""
    head, *rest = path.split(".")
    for scope in scopes:
        if head in scope:
            value = scope[head]
            for part in rest:
                if isinstance(value, Mapping) and part in value:
                    value = value[part]
                elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    value = value[int(part)]
                else:
                    raise KeyError(path)
            return value
    raise KeyError(path)


def iteration_number(parent: int, index: int) -> int:
    """Unique, stable iteration numbers for nested loops (index is 1-based)."""
    return parent * LOOP_STRIDE + index


# --- answers between the engine's parts -------------------------------------------------------
class Answer(StrEnum):
    """A checkpoint's answer, once an expiry took its default action."""

    APPROVED = "approved"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    PAUSED = "paused"  # the timeout action `pause`: nobody answered


# the answer a checkpoint's `defaultAction` stands for when it expires
DEFAULT_ANSWER: Final = {"approve": Answer.APPROVED, "reject": Answer.REJECTED,
                         "skip": Answer.SKIPPED, "pause": Answer.PAUSED}


class Recovery(StrEnum):
    """What became of a failed step: run it again, skipped, or done by a person."""

    RETRY = "retry"
    SKIP = "skip"
    DONE = "done"


class Between(StrEnum):
    """What happened between two actions, when not nothing."""

    TAKEN_OVER = "taken_over"  # a person took over and released: the step is done


class AfterTakeover(StrEnum):
    """What a released takeover means for its step."""

    COMPLETE = "complete"  # the person did the step (completed); the run goes on
    CHECKPOINT = "checkpoint"  # back to waiting on the step's checkpoint


# --- signals that unwind the run ----------------------------------------------------------------
class Rejected(Exception):
    """A checkpoint was rejected (or expired with reject): the execution ends `cancelled`."""

    def __init__(self, step_id: str, iteration: int, title: str, expired: bool) -> None:
        super().__init__(title)
        self.step_id, self.iteration, self.title, self.expired = step_id, iteration, title, expired


class NextItem(Exception):
    """The rest of this loop item is given up (skipped at its checkpoint, or abandoned by a
    step's error handler, `next_item`): the loop goes on with the next item."""

    def __init__(self, why: str = "skipped at its checkpoint") -> None:
        super().__init__(why)
        self.why = why


class PausedOut(Exception):
    """Nobody answered a checkpoint (timeout action `pause`) nor resumed within the grace
    period: close the browser, leave the execution `paused`, release the lease."""


class EndOfPlan(Exception):
    """An `end` step was reached: the run is complete."""


class PlanError(Exception):
    """A structural problem a person can fix by retrying or skipping (e.g. a missing list)."""


class StoppedByPolicy(Exception):
    """A step's recovery policy (`stop`) fails the execution."""


class OutcomeStatus(StrEnum):
    """How a run ended, as the runner sees it (`handed_back` and `lost` write no end)."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    PAUSED = "paused"  # the browser released; a resume starts a new runner
    LOST = "lost"  # not claimed, or another runner holds the lease
    HANDED_BACK = "handed_back"  # a draining pool worker gave it back to the sweeper


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    message: str
    error: Mapping[str, Any] | None = None


def exit_code(outcome: Outcome) -> int:
    """0 completed, cancelled or paused, 1 failed, 2 not claimed / lease lost."""
    return {OutcomeStatus.COMPLETED: 0, OutcomeStatus.CANCELLED: 0, OutcomeStatus.PAUSED: 0,
            OutcomeStatus.FAILED: 1}.get(outcome.status, 2)
