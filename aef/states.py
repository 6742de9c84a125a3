"""Execution, step and checkpoint state machines (pure).

The database enforces the same tables (supabase/migrations, `*_transition_allowed`); this twin
lets the API answer 409 with the current state before it writes anything.
"""

from __future__ import annotations

from typing import Final

IDLE, QUEUED, STARTING, RUNNING, PAUSED = "idle", "queued", "starting", "running", "paused"
WAITING_CHECKPOINT, WAITING_RECOVERY = "waiting_checkpoint", "waiting_recovery"
CANCELLING, COMPLETED, FAILED, CANCELLED = "cancelling", "completed", "failed", "cancelled"

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

STEP_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"running", "waiting_checkpoint", "skipped", "cancelled"}),
    "running": frozenset({"completed", "failed", "skipped", "cancelled", "waiting_checkpoint"}),
    "waiting_checkpoint": frozenset({"running", "completed", "skipped", "cancelled", "failed"}),
    "failed": frozenset({"running", "skipped", "cancelled"}),
    "completed": frozenset(),
    "skipped": frozenset(),
    "cancelled": frozenset(),
}

CHECKPOINT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"approved", "rejected", "skipped", "expired"}),
    "approved": frozenset(),
    "rejected": frozenset(),
    "skipped": frozenset(),
    "expired": frozenset(),
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
