"""The database refuses illegal state transitions (and nothing else).

The expected machines are written out here on purpose, independently of the migration: this
file is the executable description of the lifecycle. Every ordered pair of statuses is tried
against the real triggers; a refusal must be SQLSTATE AEF01 (AEF02 for a second checkpoint
answer, AEF03 for rewriting an append-only row), surfacing through aef.db as a Conflict with a
stable code.
"""

from __future__ import annotations

import itertools
import re
import threading
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from aef.db import Database
from aef.errors import Conflict
from tests.integration.factories import (
    User,
    create_checkpoint,
    create_document,
    create_event,
    create_execution,
    create_log,
    create_secrets,
    create_step,
    create_user,
)

# --- the machines ---------------------------------------------------------------------------------

EXECUTION_STATUSES = ["idle", "queued", "starting", "running", "paused", "waiting_checkpoint",
                      "waiting_recovery", "cancelling", "completed", "failed", "cancelled"]

EXECUTION_MOVES: dict[str, set[str]] = {
    # created, not yet started: start it, or drop it
    "idle": {"queued", "cancelled"},
    # waiting for a runner: claimed, launch failed, stop requested, or stopped before any runner
    "queued": {"starting", "failed", "cancelling", "cancelled"},
    # a runner claimed it (lease held)
    "starting": {"running", "failed", "cancelling"},
    "running": {"paused", "waiting_checkpoint", "waiting_recovery", "completed", "failed",
                "cancelling"},
    # a user's resume after the runner released its browser (unanswered checkpoint) re-queues
    "paused": {"running", "failed", "cancelling", "queued"},
    # a rejected checkpoint may end the run at once; one nobody answered may pause it
    "waiting_checkpoint": {"running", "failed", "cancelling", "cancelled", "paused"},
    # the person picks retry / skip / takeover (running) or stop
    "waiting_recovery": {"running", "failed", "cancelling"},
    # the runner acknowledges the stop (or the sweeper does, for a dead runner)
    "cancelling": {"cancelled"},
    # terminal for a runner; a user's retry / resume re-queues it
    "failed": {"queued"},
    "completed": set(),
    "cancelled": set(),
}

STEP_STATUSES = ["pending", "running", "waiting_checkpoint", "completed", "failed", "skipped",
                 "cancelled"]

STEP_MOVES: dict[str, set[str]] = {
    "pending": {"running", "waiting_checkpoint", "skipped", "cancelled"},
    "running": {"completed", "failed", "skipped", "cancelled", "waiting_checkpoint"},
    "waiting_checkpoint": {"running", "completed", "skipped", "cancelled", "failed"},
    # retry, skip, or stop after a failure
    "failed": {"running", "skipped", "cancelled"},
    "completed": set(),
    "skipped": set(),
    "cancelled": set(),
}

CHECKPOINT_STATUSES = ["pending", "approved", "rejected", "skipped", "expired"]
CHECKPOINT_ANSWERS = {"approved", "rejected", "skipped", "expired"}


def allowed(moves: dict[str, set[str]], old: str, new: str) -> bool:
    """Keeping the status is an ordinary row update (progress, heartbeat), not a transition."""
    return old == new or new in moves[old]


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owner(db: Database) -> User:
    return create_user(db)


@pytest.fixture(scope="module")
def document_id(db: Database, owner: User) -> Any:
    return create_document(db, owner)["id"]


def pg_cause(exc: BaseException) -> psycopg.Error:
    cause = exc.__cause__
    assert isinstance(cause, psycopg.Error), f"expected a database error, got {cause!r}"
    return cause


def test_machines_cover_every_status() -> None:
    assert set(EXECUTION_MOVES) == set(EXECUTION_STATUSES)
    assert set().union(*EXECUTION_MOVES.values()) <= set(EXECUTION_STATUSES)
    assert set(STEP_MOVES) == set(STEP_STATUSES)
    assert set().union(*STEP_MOVES.values()) <= set(STEP_STATUSES)


def test_database_accepts_exactly_the_statuses_listed_here(db: Database) -> None:
    """The check constraints name the same status sets as the machines above."""
    with db.as_service() as conn:
        rows = conn.execute(
            "select conrelid::regclass::text as tbl, pg_get_constraintdef(oid) as def "
            "from pg_constraint where contype = 'c' and conrelid in "
            "('public.aef_executions'::regclass, 'public.aef_execution_steps'::regclass, "
            "'public.aef_checkpoints'::regclass)").fetchall()
    defs = {r["tbl"]: r["def"] for r in rows if "(status = ANY" in r["def"]}
    for table, statuses in [("aef_executions", EXECUTION_STATUSES),
                            ("aef_execution_steps", STEP_STATUSES),
                            ("aef_checkpoints", CHECKPOINT_STATUSES)]:
        assert set(re.findall(r"'([^']*)'::text", defs[table])) == set(statuses), table


# --- executions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"),
                         list(itertools.product(EXECUTION_STATUSES, EXECUTION_STATUSES)))
def test_execution_transition(db: Database, owner: User, document_id: Any, old: str,
                              new: str) -> None:
    execution = create_execution(db, owner, document_id=document_id, status=old)
    update = "update aef_executions set status = %s where id = %s"
    if allowed(EXECUTION_MOVES, old, new):
        with db.as_service() as conn:
            row = conn.execute(update + " returning status", (new, execution["id"])).fetchone()
        assert row == {"status": new}
        return
    with pytest.raises(Conflict) as refused:
        with db.as_service() as conn:
            conn.execute(update, (new, execution["id"]))
    assert refused.value.code == "illegal_transition"
    assert refused.value.status == 409
    assert refused.value.extra["transition"] == {"entity": "execution", "from": old, "to": new}
    assert pg_cause(refused.value).sqlstate == "AEF01"
    with db.as_service() as conn:
        kept = conn.execute("select status from aef_executions where id = %s",
                            (execution["id"],)).fetchone()
    assert kept == {"status": old}


@pytest.mark.parametrize("terminal", ["completed", "cancelled"])
def test_completed_and_cancelled_never_leave(db: Database, owner: User, document_id: Any,
                                             terminal: str) -> None:
    execution = create_execution(db, owner, document_id=document_id, status=terminal)
    for new in set(EXECUTION_STATUSES) - {terminal}:
        with pytest.raises(Conflict, match="illegal execution transition"):
            with db.as_service() as conn:
                conn.execute("update aef_executions set status = %s where id = %s",
                             (new, execution["id"]))


def test_failed_only_requeues(db: Database, owner: User, document_id: Any) -> None:
    execution = create_execution(db, owner, document_id=document_id, status="failed")
    for new in set(EXECUTION_STATUSES) - {"failed", "queued"}:
        with pytest.raises(Conflict):
            with db.as_service() as conn:
                conn.execute("update aef_executions set status = %s where id = %s",
                             (new, execution["id"]))
    with db.as_service() as conn:
        row = conn.execute("update aef_executions set status = 'queued' where id = %s "
                           "returning status, finished_at", (execution["id"],)).fetchone()
    assert row == {"status": "queued", "finished_at": None}


def test_terminal_status_stamps_finish_and_drops_lease(db: Database, owner: User,
                                                       document_id: Any) -> None:
    execution = create_execution(db, owner, document_id=document_id, status="running")
    with db.as_service() as conn:
        conn.execute("update aef_executions set lease_expires_at = now() + interval '1 minute' "
                     "where id = %s", (execution["id"],))
        row = conn.execute("update aef_executions set status = 'completed' where id = %s "
                           "returning finished_at, lease_expires_at",
                           (execution["id"],)).fetchone()
    assert row is not None
    assert row["finished_at"] is not None and row["lease_expires_at"] is None


@pytest.mark.parametrize(("final", "kept"), [("completed", False), ("cancelled", False),
                                             ("failed", True)])
def test_secrets_live_until_the_execution_is_over(db: Database, owner: User, document_id: Any,
                                                  final: str, kept: bool) -> None:
    """failed can be retried, so its secrets stay; completed and cancelled drop them."""
    source = "cancelling" if final == "cancelled" else "running"
    execution = create_execution(db, owner, document_id=document_id, status=source)
    create_secrets(db, execution["id"], {"password": "p"})
    with db.as_service() as conn:
        conn.execute("update aef_executions set status = %s where id = %s",
                     (final, execution["id"]))
        left = conn.execute("select count(*) as n from aef_execution_secrets "
                            "where execution_id = %s", (execution["id"],)).fetchone()
    assert left == {"n": 1 if kept else 0}


@pytest.mark.parametrize("column", ["user_id", "document_id"])
def test_execution_owner_and_document_are_immutable(db: Database, owner: User,
                                                    document_id: Any, column: str) -> None:
    other = create_user(db)
    execution = create_execution(db, owner, document_id=document_id, status="running")
    value = other.id if column == "user_id" else create_document(db, owner)["id"]
    with pytest.raises(Conflict) as refused:
        with db.as_service() as conn:
            conn.execute(f"update aef_executions set {column} = %s where id = %s",
                         (value, execution["id"]))
    assert pg_cause(refused.value).sqlstate == "AEF01"


# --- steps ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def step_execution_id(db: Database, owner: User, document_id: Any) -> Any:
    return create_execution(db, owner, document_id=document_id, status="running")["id"]


@pytest.mark.parametrize(("old", "new"), list(itertools.product(STEP_STATUSES, STEP_STATUSES)))
def test_step_transition(db: Database, step_execution_id: Any, old: str, new: str) -> None:
    step_id = f"{old}-to-{new}"
    create_step(db, step_execution_id, step_id, status=old)
    update = ("update aef_execution_steps set status = %s "
              "where execution_id = %s and step_id = %s and iteration = 0")
    if allowed(STEP_MOVES, old, new):
        with db.as_service() as conn:
            done = conn.execute(update, (new, step_execution_id, step_id))
        assert done.rowcount == 1
        return
    with pytest.raises(Conflict) as refused:
        with db.as_service() as conn:
            conn.execute(update, (new, step_execution_id, step_id))
    assert refused.value.code == "illegal_transition"
    assert refused.value.extra["transition"] == {"entity": "step", "from": old, "to": new}
    assert pg_cause(refused.value).sqlstate == "AEF01"


def test_loop_iterations_are_separate_step_runs(db: Database, step_execution_id: Any) -> None:
    create_step(db, step_execution_id, "loop-body", iteration=0, status="completed")
    create_step(db, step_execution_id, "loop-body", iteration=1, status="pending")
    with db.as_service() as conn:
        conn.execute("update aef_execution_steps set status = 'running' "
                     "where execution_id = %s and step_id = 'loop-body' and iteration = 1",
                     (step_execution_id,))
    with pytest.raises(Conflict):
        with db.as_service() as conn:
            conn.execute("update aef_execution_steps set status = 'running' "
                         "where execution_id = %s and step_id = 'loop-body' and iteration = 0",
                         (step_execution_id,))


def test_step_identity_is_immutable(db: Database, step_execution_id: Any) -> None:
    create_step(db, step_execution_id, "fixed", status="running")
    with pytest.raises(Conflict) as refused:
        with db.as_service() as conn:
            conn.execute("update aef_execution_steps set iteration = 7 "
                         "where execution_id = %s and step_id = 'fixed'", (step_execution_id,))
    assert pg_cause(refused.value).sqlstate == "AEF01"


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def waiting_execution_id(db: Database, owner: User, document_id: Any) -> Any:
    return create_execution(db, owner, document_id=document_id,
                            status="waiting_checkpoint")["id"]


def answer(db: Database, user: User, checkpoint_id: Any, status: str,
           response: dict[str, Any] | None = None) -> dict[str, Any]:
    """Answer as the API does for the caller (role aef_api)."""
    with db.as_user(user.claims) as conn:
        row = conn.execute(
            "update aef_checkpoints set status = %s, response = %s, responded_by = %s "
            "where id = %s returning status, response, responded_by, responded_at",
            (status, Jsonb(response) if response is not None else None, user.id,
             checkpoint_id)).fetchone()
    assert row is not None
    return dict(row)


@pytest.mark.parametrize(("old", "new"),
                         list(itertools.product(CHECKPOINT_STATUSES, CHECKPOINT_STATUSES)))
def test_checkpoint_transition(db: Database, owner: User, waiting_execution_id: Any,
                               old: str, new: str) -> None:
    checkpoint = create_checkpoint(db, waiting_execution_id, f"cp-{old}-{new}")
    if old != "pending":
        answer(db, owner, checkpoint["id"], old, {"by": "first"})
    if old == "pending" and new in CHECKPOINT_ANSWERS:
        assert answer(db, owner, checkpoint["id"], new)["status"] == new
        return
    with pytest.raises(Conflict) as refused:
        answer(db, owner, checkpoint["id"], new)
    if old == "pending":  # pending -> pending is not an answer
        assert refused.value.code == "illegal_transition"
        assert pg_cause(refused.value).sqlstate == "AEF01"
    else:
        assert refused.value.code == "checkpoint_already_answered"
        assert pg_cause(refused.value).sqlstate == "AEF02"
        first = refused.value.extra["firstDecision"]
        assert first["status"] == old and first["response"] == {"by": "first"}


def test_checkpoint_second_answer_carries_the_first_decision(
        db: Database, owner: User, waiting_execution_id: Any) -> None:
    checkpoint = create_checkpoint(db, waiting_execution_id, "answered-once")
    first = answer(db, owner, checkpoint["id"], "approved", {"note": "looks right"})
    assert first["responded_at"] is not None and first["responded_by"] is not None
    with pytest.raises(Conflict) as refused:
        answer(db, owner, checkpoint["id"], "rejected", {"note": "changed my mind"})
    assert refused.value.status == 409
    decision = refused.value.extra["firstDecision"]
    assert decision["status"] == "approved"
    assert decision["response"] == {"note": "looks right"}
    assert decision["respondedAt"]
    with db.as_service() as conn:
        stored = conn.execute("select status, response from aef_checkpoints where id = %s",
                              (checkpoint["id"],)).fetchone()
    assert stored == {"status": "approved", "response": {"note": "looks right"}}


def test_concurrent_answers_exactly_one_wins(db: Database, owner: User,
                                             waiting_execution_id: Any) -> None:
    """Two people click at once: the second waits on the row lock, then sees it answered."""
    checkpoint = create_checkpoint(db, waiting_execution_id, "race")
    first_updated = threading.Event()
    outcomes: dict[str, Any] = {}

    def first() -> None:
        with db.as_user(owner.claims) as conn:
            conn.execute("update aef_checkpoints set status = 'approved', "
                         "response = '{\"who\": \"first\"}' where id = %s", (checkpoint["id"],))
            first_updated.set()
            conn.execute("select pg_sleep(0.3)")
        outcomes["first"] = "ok"

    def second() -> None:
        first_updated.wait(5)
        try:
            answer(db, owner, checkpoint["id"], "rejected", {"who": "second"})
            outcomes["second"] = "ok"
        except Conflict as exc:
            outcomes["second"] = exc

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert outcomes["first"] == "ok"
    refused = outcomes["second"]
    assert isinstance(refused, Conflict) and refused.code == "checkpoint_already_answered"
    assert refused.extra["firstDecision"]["response"] == {"who": "first"}


@pytest.mark.parametrize("status", sorted(CHECKPOINT_ANSWERS))
def test_checkpoint_cannot_be_created_answered(db: Database, waiting_execution_id: Any,
                                               status: str) -> None:
    with pytest.raises(Conflict) as refused:
        with db.as_service() as conn:
            conn.execute("insert into aef_checkpoints (execution_id, step_id, type, title, "
                         "status) values (%s, 'born-answered', 'manual', 't', %s)",
                         (waiting_execution_id, status))
    assert refused.value.code == "illegal_transition"
    assert pg_cause(refused.value).sqlstate == "AEF01"


def test_one_open_checkpoint_per_step_run(db: Database, waiting_execution_id: Any) -> None:
    create_checkpoint(db, waiting_execution_id, "single")
    with pytest.raises(psycopg.errors.UniqueViolation):
        create_checkpoint(db, waiting_execution_id, "single")


def test_checkpoint_gets_its_deadline(db: Database, waiting_execution_id: Any) -> None:
    checkpoint = create_checkpoint(db, waiting_execution_id, "deadline", timeout_seconds=90)
    with db.as_service() as conn:
        row = conn.execute("select extract(epoch from expires_at - created_at)::int as secs "
                           "from aef_checkpoints where id = %s", (checkpoint["id"],)).fetchone()
    assert row == {"secs": 90}


# --- append-only ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "change"), [
    ("aef_events", "type = 'error'"),
    ("aef_events", "message = '{}'"),
    ("aef_logs", "message = 'rewritten'"),
    ("aef_logs", "level = 'error'"),
])
def test_events_and_logs_are_append_only(db: Database, owner: User, document_id: Any,
                                         table: str, change: str) -> None:
    execution = create_execution(db, owner, document_id=document_id, status="running")
    create_event(db, execution["id"])
    create_log(db, execution["id"], "original")
    with pytest.raises(Conflict) as refused:
        with db.as_service() as conn:
            conn.execute(f"update {table} set {change} where execution_id = %s",
                         (execution["id"],))
    assert refused.value.code == "append_only"
    assert pg_cause(refused.value).sqlstate == "AEF03"


def test_runner_cannot_rewrite_its_own_logs_or_events(db: Database, owner: User,
                                                      document_id: Any) -> None:
    token = "runner-token-append-only"
    execution = create_execution(db, owner, document_id=document_id, status="running",
                                 runner_token=token)
    create_event(db, execution["id"])
    create_log(db, execution["id"])
    for table, change in [("aef_events", "type = 'error'"), ("aef_logs", "message = 'x'")]:
        with pytest.raises((Conflict, psycopg.errors.InsufficientPrivilege)):
            with db.as_runner(str(execution["id"]), token) as conn:
                conn.execute(f"update {table} set {change}")


# --- the Python twin (aef/states.py) is the database's machine ------------------------------------


def test_status_spellings_are_one_vocabulary() -> None:
    from typing import get_args

    from aef import models, states

    assert set(get_args(models.ExecutionStatus)) == set(states.ExecutionStatus)
    assert set(get_args(models.StepStatus)) == set(states.StepStatus)
    assert set(get_args(models.CheckpointStatus)) == set(states.CheckpointStatus)
    assert set(states.ExecutionStatus) == set(EXECUTION_STATUSES)
    assert set(states.EXECUTION_TRANSITIONS) == set(states.ExecutionStatus)
    assert set(states.STEP_TRANSITIONS) == set(states.StepStatus)
    assert set(states.CHECKPOINT_TRANSITIONS) == set(states.CheckpointStatus)


@pytest.mark.parametrize("machine", ["execution", "step"])
def test_python_transition_tables_match_the_database(db: Database, machine: str) -> None:
    from aef import states

    if machine == "execution":
        statuses, allowed = list(states.ExecutionStatus), states.can_transition_execution
    else:
        statuses, allowed = list(states.StepStatus), states.can_transition_step
    pairs = [(old, new) for old in statuses for new in statuses if old != new]
    with db.as_service() as conn:
        rows = conn.execute(
            f"select o, n, aef_private.{machine}_transition_allowed(o, n) as ok"
            " from unnest(%s::text[], %s::text[]) as p(o, n)",
            ([o.value for o, _ in pairs], [n.value for _, n in pairs])).fetchall()
    differ = [(r["o"], r["n"], r["ok"]) for r in rows if r["ok"] != allowed(r["o"], r["n"])]
    assert differ == [], "aef/states.py and the migration disagree"
