"""Helpers for runner tests: executions written as the API writes them, and the person's side.

A person acts through the API role (`db.as_user(claims)`, role aef_api under RLS): answering a
checkpoint, inserting a command, requesting a stop. Reads for assertions use the service role.
"""

from __future__ import annotations

import hashlib
import json
import secrets as tokens
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from psycopg.types.json import Jsonb

from aef.db import Database
from tests.integration.factories import User, create_document, create_execution, create_user
from tests.waiting import eventually

T = TypeVar("T")


@dataclass(frozen=True)
class Execution:
    id: str
    token: str
    user: User
    document_id: str


def aef_document(plan: list[dict[str, Any]], config: Mapping[str, Any] | None = None,
                 title: str = "Runner test") -> dict[str, Any]:
    """An AEF document (original meta + the `aef` section) around `plan`."""
    return {
        "meta": {"id": "runner-test", "title": title, "version": "1.0"},
        "aef": {
            "config": dict(config or {}),
            "plan": plan,
            "transformedAt": datetime.now(UTC).isoformat(),
            "transformedBy": "tests",
            "version": "1.0",
        },
    }


def make_execution(db: Database, plan: list[dict[str, Any]], *,
                   secret_values: Mapping[str, str] | None = None,
                   variables: Mapping[str, Any] | None = None,
                   config: Mapping[str, Any] | None = None,
                   step_ids: list[str] | None = None,
                   user: User | None = None) -> Execution:
    """A queued execution with a runner token, as POST /execute leaves it."""
    user = user or create_user(db)
    document = create_document(db, user, title="Runner test",
                               document=aef_document(plan, config))
    token = tokens.token_urlsafe(32)
    row = create_execution(db, user, document_id=document["id"], status="queued",
                           runner_token=token)
    execution_id = str(row["id"])
    with db.as_service() as conn:
        conn.execute("update aef_executions set variables = %s, step_ids = %s where id = %s",
                     (Jsonb(dict(variables or {})), step_ids, execution_id))
        if secret_values:
            conn.execute("insert into aef_execution_secrets (execution_id, secrets)"
                         " values (%s, %s)", (execution_id, Jsonb(dict(secret_values))))
    return Execution(execution_id, token, user, str(document["id"]))


def resume_execution(db: Database, execution: Execution, resume_from: str | None = None
                     ) -> Execution:
    """What a user's resume does to a failed execution: failed -> queued, a fresh token.

    For the crash test: after the sweeper marked the execution failed, call this and run a
    new runner with the returned Execution (its token is the new one).
    """
    token = tokens.token_urlsafe(32)
    with db.as_user(execution.user.claims) as conn:
        conn.execute(
            "update aef_executions set status = 'queued', runner_token_hash = %s,"
            " resume_from = %s, error = null where id = %s",
            (hashlib.sha256(token.encode()).digest(), resume_from, execution.id))
    return Execution(execution.id, token, execution.user, execution.document_id)


# The person's side (role aef_api with the user's claims) --------------------------------------
def answer_checkpoint(db: Database, execution: Execution, status: str,
                      step_id: str | None = None) -> str:
    """Answer the pending checkpoint (approved | rejected | skipped); returns its id."""
    with db.as_user(execution.user.claims) as conn:
        row = conn.execute(
            "select id from aef_checkpoints where execution_id = %s and status = 'pending'"
            " and (%s::text is null or step_id = %s) order by created_at limit 1",
            (execution.id, step_id, step_id)).fetchone()
        assert row is not None, "no pending checkpoint"
        conn.execute(
            "update aef_checkpoints set status = %s, response = %s, responded_by = %s"
            " where id = %s",
            (status, Jsonb({"response": status}), execution.user.id, row["id"]))
    return str(row["id"])


def send_command(db: Database, execution: Execution, command: str, *,
                 step_id: str | None = None, payload: Mapping[str, Any] | None = None) -> int:
    with db.as_user(execution.user.claims) as conn:
        row = conn.execute(
            "insert into aef_commands (execution_id, command, step_id, payload)"
            " values (%s, %s, %s, %s) returning id",
            (execution.id, command, step_id, Jsonb(dict(payload or {})))).fetchone()
    assert row is not None
    return int(row["id"])


def request_stop(db: Database, execution: Execution) -> None:
    """What DELETE /stop does first: the execution becomes `cancelling` (which NOTIFYs)."""
    with db.as_user(execution.user.claims) as conn:
        conn.execute("update aef_executions set status = 'cancelling' where id = %s",
                     (execution.id,))


# Reads (service role) -------------------------------------------------------------------------
def execution_row(db: Database, execution: Execution) -> dict[str, Any]:
    with db.as_service() as conn:
        row = conn.execute("select * from aef_executions where id = %s",
                           (execution.id,)).fetchone()
    assert row is not None
    return dict(row)


def step_rows(db: Database, execution: Execution) -> dict[tuple[str, int], dict[str, Any]]:
    with db.as_service() as conn:
        rows = conn.execute("select * from aef_execution_steps where execution_id = %s",
                            (execution.id,)).fetchall()
    return {(r["step_id"], r["iteration"]): dict(r) for r in rows}


def events(db: Database, execution: Execution) -> list[dict[str, Any]]:
    with db.as_service() as conn:
        return [dict(r) for r in conn.execute(
            "select seq, type, message from aef_events where execution_id = %s order by seq",
            (execution.id,)).fetchall()]


def logs(db: Database, execution: Execution) -> list[dict[str, Any]]:
    with db.as_service() as conn:
        return [dict(r) for r in conn.execute(
            "select * from aef_logs where execution_id = %s order by id",
            (execution.id,)).fetchall()]


def commands(db: Database, execution: Execution) -> list[dict[str, Any]]:
    with db.as_service() as conn:
        return [dict(r) for r in conn.execute(
            "select * from aef_commands where execution_id = %s order by id",
            (execution.id,)).fetchall()]


def checkpoints(db: Database, execution: Execution) -> list[dict[str, Any]]:
    with db.as_service() as conn:
        return [dict(r) for r in conn.execute(
            "select * from aef_checkpoints where execution_id = %s order by created_at",
            (execution.id,)).fetchall()]


def dump(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


async def status_becomes(db: Database, execution: Execution, *statuses: str,
                         within: float = 20.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        row = execution_row(db, execution)
        return row if row["status"] in statuses else None
    return await eventually(probe, within=within, what=f"status in {statuses}")


async def pending_checkpoint(db: Database, execution: Execution,
                             within: float = 20.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pending = [c for c in checkpoints(db, execution) if c["status"] == "pending"]
        return pending[0] if pending else None
    return await eventually(probe, within=within, what="a pending checkpoint")


def task(step_id: str, actions: list[dict[str, Any]], *, label: str | None = None,
         checkpoint: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A plan step (camelCase, as the transform writes it)."""
    step: dict[str, Any] = {"id": step_id, "label": label or step_id, "kind": "task",
                            "method": "automated", "actions": actions}
    if checkpoint is not None:
        step["checkpoint"] = checkpoint
    step.update(extra)
    return step


def before_step(title: str = "Approve this step?", *, timeout: int = 60,
                default: str = "reject") -> dict[str, Any]:
    return {"type": "before_step", "title": title, "description": title,
            "timeoutSeconds": timeout, "defaultAction": default}


async def run_engine(settings: Any, db: Database, execution: Execution) -> Any:
    """The engine in this process, as `python -m runner` would run it."""
    from runner.engine import run_execution
    return await run_execution(settings, execution.id, execution.token, db=db)


Probe = Callable[[], Awaitable[Any]]
