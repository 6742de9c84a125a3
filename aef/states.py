"""Execution, step and checkpoint state machines (pure).

The database enforces the same tables (supabase/migrations, `*_transition_allowed`); this twin
lets the API answer 409 with the current state before it writes anything. The two are compared
pair by pair against the real database (tests/integration/test_state_machines.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ExecutionStatus(StrEnum):
    """The one spelling of an execution's status (the models' Literal and the migration's
    check constraint are tested against it: tests/integration/test_state_machines.py)."""

    IDLE = "idle"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_CHECKPOINT = "waiting_checkpoint"
    WAITING_RECOVERY = "waiting_recovery"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_CHECKPOINT = "waiting_checkpoint"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class CheckpointStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    EXPIRED = "expired"


IDLE, QUEUED, STARTING = ExecutionStatus.IDLE, ExecutionStatus.QUEUED, ExecutionStatus.STARTING
RUNNING, PAUSED = ExecutionStatus.RUNNING, ExecutionStatus.PAUSED
WAITING_CHECKPOINT = ExecutionStatus.WAITING_CHECKPOINT
WAITING_RECOVERY = ExecutionStatus.WAITING_RECOVERY
CANCELLING, COMPLETED = ExecutionStatus.CANCELLING, ExecutionStatus.COMPLETED
FAILED, CANCELLED = ExecutionStatus.FAILED, ExecutionStatus.CANCELLED

EXECUTION_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    IDLE: frozenset({QUEUED, CANCELLED}),
    QUEUED: frozenset({STARTING, FAILED, CANCELLING, CANCELLED}),
    STARTING: frozenset({RUNNING, FAILED, CANCELLING}),
    RUNNING: frozenset({PAUSED, WAITING_CHECKPOINT, WAITING_RECOVERY, COMPLETED, FAILED,
                        CANCELLING}),
    # paused -> queued: a resume after the runner released the browser (checkpoint timeout)
    PAUSED: frozenset({RUNNING, FAILED, CANCELLING, QUEUED}),
    # -> paused: nobody answered a checkpoint whose timeout action is `pause`
    WAITING_CHECKPOINT: frozenset({RUNNING, FAILED, CANCELLING, CANCELLED, PAUSED}),
    WAITING_RECOVERY: frozenset({RUNNING, FAILED, CANCELLING}),
    CANCELLING: frozenset({CANCELLED}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
    # terminal for a runner; only a user's retry / resume re-queues it
    FAILED: frozenset({QUEUED}),
}

FINAL_EXECUTION_STATES: Final = frozenset({COMPLETED, CANCELLED, FAILED})
# A runner may hold these; they count against the per-user cap.
ACTIVE_EXECUTION_STATES: Final = frozenset(
    {QUEUED, STARTING, RUNNING, PAUSED, WAITING_CHECKPOINT, WAITING_RECOVERY, CANCELLING})
# States in which a live runner listens for commands.
RUNNER_LISTENING_STATES: Final = frozenset(
    {STARTING, RUNNING, PAUSED, WAITING_CHECKPOINT, WAITING_RECOVERY})

_S = StepStatus
STEP_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.WAITING_CHECKPOINT, _S.SKIPPED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.COMPLETED, _S.FAILED, _S.SKIPPED, _S.CANCELLED,
                           _S.WAITING_CHECKPOINT}),
    _S.WAITING_CHECKPOINT: frozenset({_S.RUNNING, _S.COMPLETED, _S.SKIPPED, _S.CANCELLED,
                                      _S.FAILED}),
    _S.FAILED: frozenset({_S.RUNNING, _S.SKIPPED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.SKIPPED: frozenset(),
    _S.CANCELLED: frozenset(),
}

_C = CheckpointStatus
CHECKPOINT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    _C.PENDING: frozenset({_C.APPROVED, _C.REJECTED, _C.SKIPPED, _C.EXPIRED}),
    _C.APPROVED: frozenset(),
    _C.REJECTED: frozenset(),
    _C.SKIPPED: frozenset(),
    _C.EXPIRED: frozenset(),
}

# What each user action needs from the execution, and what it is delivered as.
ACTION_ALLOWED_FROM: Final[dict[str, frozenset[str]]] = {
    "execute": frozenset({IDLE, FAILED, RUNNING, PAUSED, WAITING_RECOVERY}),
    "retry": frozenset({WAITING_RECOVERY, FAILED}),
    "skip": frozenset({WAITING_RECOVERY, FAILED}),
    "pause": frozenset({RUNNING, STARTING}),
    "resume": frozenset({PAUSED, FAILED}),
    "takeover": frozenset({WAITING_RECOVERY, RUNNING, PAUSED}),
    "release": frozenset({WAITING_RECOVERY, RUNNING, PAUSED}),
    "input": frozenset({WAITING_RECOVERY, RUNNING, PAUSED}),
    "stop": frozenset(ACTIVE_EXECUTION_STATES | {IDLE}),
}

ACTION_COMMAND: Final[dict[str, str]] = {
    "execute": "run_step",
    "retry": "retry",
    "skip": "skip",
    "pause": "pause",
    "resume": "resume",
    "takeover": "takeover",
    "release": "release",
    "input": "input",
    "stop": "stop",
}


def can_transition_execution(old: str, new: str) -> bool:
    return old == new or new in EXECUTION_TRANSITIONS.get(old, frozenset())


def can_transition_step(old: str, new: str) -> bool:
    return old == new or new in STEP_TRANSITIONS.get(old, frozenset())


def can_transition_checkpoint(old: str, new: str) -> bool:
    return new in CHECKPOINT_TRANSITIONS.get(old, frozenset())


def action_allowed(action: str, status: str) -> bool:
    return status in ACTION_ALLOWED_FROM.get(action, frozenset())
