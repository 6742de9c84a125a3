"""Rows for integration tests, written the way production writes them.

Users go straight into `auth.users` over the login connection (no AEF role may touch the auth
schema). Every AEF row is written through `db.as_service()`, so the triggers (owner taken from
the execution, gapless event seq, broadcast) run exactly as they do in production. Each helper
returns the stored row as a dict (uuid columns are `uuid.UUID`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from aef.db import Database

Id = str | uuid.UUID
Row = dict[str, Any]


@dataclass(frozen=True)
class User:
    """A Supabase auth user and the JWT claims supabase-js would present for it."""

    id: str
    email: str

    @property
    def claims(self) -> dict[str, Any]:
        return {"sub": self.id, "role": "authenticated", "aud": "authenticated",
                "email": self.email}


@contextmanager
def admin_connection(db: Database) -> Iterator[psycopg.Connection[Row]]:
    """`postgres` (the operator, no superuser), for what no AEF role may do: auth.users, reads.

    Commits on success, like `Database` transactions. A plain `Database` (the benchmarks, on
    a plain server) is its own admin.
    """
    url = getattr(db, "admin_url", db.url)
    with psycopg.connect(url, row_factory=dict_row, prepare_threshold=None) as conn:
        yield conn


def broadcast_rows(db: Database, execution_id: Any,
                   columns: str = "event, payload, private") -> list[Row]:
    """The execution's broadcasts in realtime.messages, in seq order, each payload as AEF sent
    it: Supabase's realtime.send adds the message's id to a payload without one (checked here,
    then taken off). `columns` is a literal from the caller."""
    with admin_connection(db) as conn:
        rows = conn.execute(
            f"select id as message_id, {columns} from realtime.messages "
            "where topic = %s and extension = 'broadcast' and payload ? 'seq' "
            "order by (payload->>'seq')::int, inserted_at",
            (f"execution:{execution_id}",)).fetchall()
    for row in rows:
        message_id = str(row.pop("message_id"))
        if "payload" in row:
            assert row["payload"].pop("id") == message_id
    return rows


def create_user(db: Database, email: str | None = None) -> User:
    user_id = str(uuid.uuid4())
    email = email or f"user-{user_id[:8]}@example.test"
    with admin_connection(db) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email) "
            "values (%s, 'authenticated', 'authenticated', %s)",
            (user_id, email),
        )
    return User(id=user_id, email=email)


def runner_token_hash(token: str) -> bytes:
    """What `aef_executions.runner_token_hash` stores for a runner token."""
    return hashlib.sha256(token.encode()).digest()


def _insert(db: Database, sql: str, params: dict[str, Any]) -> Row:
    with db.as_service() as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return dict(row)


def create_document(db: Database, user: User, *, title: str = "Test document",
                    document: dict[str, Any] | None = None, sop_id: Id | None = None) -> Row:
    return _insert(
        db,
        "insert into aef_documents (user_id, sop_id, title, document) "
        "values (%(user_id)s, %(sop_id)s, %(title)s, %(document)s) returning *",
        {"user_id": user.id, "sop_id": sop_id, "title": title,
         "document": Jsonb(document if document is not None else {"aef": {"plan": []}})},
    )


def create_execution(db: Database, user: User, *, document_id: Id | None = None,
                     status: str = "idle", runner_token: str | None = None) -> Row:
    """An execution inserted directly in `status` (inserts are not transitions)."""
    if document_id is None:
        document_id = create_document(db, user)["id"]
    return _insert(
        db,
        "insert into aef_executions (user_id, document_id, status, runner_token_hash) "
        "values (%(user_id)s, %(document_id)s, %(status)s, %(hash)s) returning *",
        {"user_id": user.id, "document_id": document_id, "status": status,
         "hash": runner_token_hash(runner_token) if runner_token is not None else None},
    )


def set_runner_token(db: Database, execution_id: Id, token: str | None = None) -> str:
    """Give the execution a runner token (stored as its SHA-256); returns the token."""
    token = token or secrets.token_urlsafe(32)
    with db.as_service() as conn:
        conn.execute("update aef_executions set runner_token_hash = %s where id = %s",
                     (runner_token_hash(token), execution_id))
    return token


def create_step(db: Database, execution_id: Id, step_id: str = "step-1", *,
                iteration: int = 0, status: str = "pending", label: str | None = None) -> Row:
    return _insert(
        db,
        "insert into aef_execution_steps (execution_id, step_id, iteration, status, label) "
        "values (%(execution_id)s, %(step_id)s, %(iteration)s, %(status)s, %(label)s) "
        "returning *",
        {"execution_id": execution_id, "step_id": step_id, "iteration": iteration,
         "status": status, "label": label or step_id},
    )


def create_checkpoint(db: Database, execution_id: Id, step_id: str = "step-1", *,
                      iteration: int = 0, type: str = "before_step",
                      title: str = "Approve this step?", description: str | None = None,
                      default_action: str = "reject", timeout_seconds: int = 300) -> Row:
    """A pending checkpoint (the only state a checkpoint can be created in)."""
    return _insert(
        db,
        "insert into aef_checkpoints (execution_id, step_id, iteration, type, title, "
        "description, default_action, timeout_seconds) values (%(execution_id)s, %(step_id)s, "
        "%(iteration)s, %(type)s, %(title)s, %(description)s, %(default_action)s, "
        "%(timeout_seconds)s) returning *",
        {"execution_id": execution_id, "step_id": step_id, "iteration": iteration,
         "type": type, "title": title, "description": description,
         "default_action": default_action, "timeout_seconds": timeout_seconds},
    )


def create_log(db: Database, execution_id: Id, message: str = "log line", *,
               level: str = "info", category: str = "system", step_id: str | None = None,
               details: dict[str, Any] | None = None) -> Row:
    return _insert(
        db,
        "insert into aef_logs (execution_id, step_id, level, category, message, details) "
        "values (%(execution_id)s, %(step_id)s, %(level)s, %(category)s, %(message)s, "
        "%(details)s) returning *",
        {"execution_id": execution_id, "step_id": step_id, "level": level,
         "category": category, "message": message,
         "details": Jsonb(details) if details is not None else None},
    )


def create_event(db: Database, execution_id: Id, type: str = "execution_update",
                 extras: dict[str, Any] | None = None) -> Row:
    """Append to the outbox; the trigger assigns seq, builds the live message, broadcasts."""
    return _insert(
        db,
        "insert into aef_events (execution_id, type, message) "
        "values (%(execution_id)s, %(type)s, %(message)s) returning *",
        {"execution_id": execution_id, "type": type, "message": Jsonb(extras or {})},
    )


def create_command(db: Database, execution_id: Id, command: str = "pause", *,
                   step_id: str | None = None, payload: dict[str, Any] | None = None) -> Row:
    return _insert(
        db,
        "insert into aef_commands (execution_id, command, step_id, payload) "
        "values (%(execution_id)s, %(command)s, %(step_id)s, %(payload)s) returning *",
        {"execution_id": execution_id, "command": command, "step_id": step_id,
         "payload": Jsonb(payload or {})},
    )


def create_secrets(db: Database, execution_id: Id, values: dict[str, str]) -> Row:
    return _insert(
        db,
        "insert into aef_execution_secrets (execution_id, secrets) "
        "values (%(execution_id)s, %(secrets)s) returning *",
        {"execution_id": execution_id, "secrets": Jsonb(values)},
    )


def create_rate_limit(db: Database, user: User, bucket: str = "execute",
                      tokens: float = 10.0) -> Row:
    return _insert(
        db,
        "insert into aef_rate_limits (user_id, bucket, tokens) "
        "values (%(user_id)s, %(bucket)s, %(tokens)s) returning *",
        {"user_id": user.id, "bucket": bucket, "tokens": tokens},
    )


def create_idempotency_key(db: Database, user: User, key: str | None = None, *,
                           request_hash: str = "request-hash",
                           execution_id: Id | None = None,
                           response: dict[str, Any] | None = None) -> Row:
    return _insert(
        db,
        "insert into aef_idempotency_keys (user_id, key, request_hash, execution_id, response) "
        "values (%(user_id)s, %(key)s, %(request_hash)s, %(execution_id)s, %(response)s) "
        "returning *",
        {"user_id": user.id, "key": key or f"key-{uuid.uuid4().hex}",
         "request_hash": request_hash, "execution_id": execution_id,
         "response": Jsonb(response) if response is not None else None},
    )


@dataclass(frozen=True)
class OwnedRows:
    """One row in every AEF table, all belonging to `user` (the execution has a runner token)."""

    user: User
    runner_token: str
    document: Row
    execution: Row
    step: Row
    checkpoint: Row
    log: Row
    event: Row
    command: Row
    secrets: Row
    rate_limit: Row
    idempotency_key: Row

    @property
    def execution_id(self) -> str:
        return str(self.execution["id"])


def create_rows_in_every_table(db: Database, user: User) -> OwnedRows:
    token = secrets.token_urlsafe(32)
    document = create_document(db, user)
    execution = create_execution(db, user, document_id=document["id"], status="running",
                                 runner_token=token)
    execution_id = execution["id"]
    return OwnedRows(
        user=user,
        runner_token=token,
        document=document,
        execution=execution,
        step=create_step(db, execution_id, status="running"),
        checkpoint=create_checkpoint(db, execution_id),
        log=create_log(db, execution_id),
        event=create_event(db, execution_id),
        command=create_command(db, execution_id),
        secrets=create_secrets(db, execution_id, {"password": "s3cret"}),
        rate_limit=create_rate_limit(db, user, bucket=f"bucket-{uuid.uuid4().hex[:8]}"),
        idempotency_key=create_idempotency_key(db, user, execution_id=execution_id),
    )
