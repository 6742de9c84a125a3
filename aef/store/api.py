"""SQL of the API functions and the sweeper: one function per query.

Each function takes a connection opened by `aef.db` with the right identity (the caller for
`as_user`, the service role for the sweeper). RLS does the ownership check: a row that is not
the caller's is simply not there, which the service turns into a 404.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from aef.db import Connection
from aef.store import common
from aef.store.common import get_status as get_status

ACTIVE = ("queued", "starting", "running", "paused", "waiting_checkpoint", "waiting_recovery",
          "cancelling")



@dataclass(frozen=True)
class ExecutionRow:
    """An execution as the functions and the sweeper read it (`get_execution`)."""

    id: UUID
    user_id: UUID
    document_id: UUID
    status: str
    step_ids: list[str] | None
    current_step_id: str | None
    progress: int
    browser: dict[str, Any] | None
    error: dict[str, Any] | None
    last_seq: int
    task_arn: str | None
    runner_id: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    resume_from: str | None
    stop_cleanup: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    runner_live: bool  # a runner holds a lease that has not run out


_EXECUTION_COLUMNS = ", ".join(
    [f.name for f in fields(ExecutionRow) if f.name != "runner_live"]
    + ["(lease_expires_at is not null and lease_expires_at > now()) as runner_live"])


# Rate limits and idempotency -----------------------------------------------------------------
def take_token(conn: Connection, user_id: str, bucket: str, capacity: float,
               refill_per_second: float) -> tuple[bool, float, float]:
    """Token bucket in one statement: (allowed, tokens left, seconds until the next token)."""
    row = conn.execute(
        """
        insert into aef_rate_limits as r (user_id, bucket, tokens, updated_at, last_allowed)
        values (%(user)s, %(bucket)s, %(cap)s - 1, now(), true)
        on conflict (user_id, bucket) do update set
          tokens = least(%(cap)s, r.tokens + extract(epoch from now() - r.updated_at) * %(rate)s)
                   - case when least(%(cap)s, r.tokens + extract(epoch from now() - r.updated_at)
                                     * %(rate)s) >= 1 then 1 else 0 end,
          last_allowed = least(%(cap)s, r.tokens + extract(epoch from now() - r.updated_at)
                               * %(rate)s) >= 1,
          updated_at = now()
        returning tokens, last_allowed
        """,
        {"user": user_id, "bucket": bucket, "cap": float(capacity),
         "rate": float(refill_per_second)},
    ).fetchone()
    assert row is not None
    tokens, allowed = float(row["tokens"]), bool(row["last_allowed"])
    wait = 0.0 if tokens >= 1 else (1 - tokens) / refill_per_second
    return allowed, tokens, wait


def lock_user(conn: Connection, user_id: str) -> None:
    """Serialize a user's starts so the active-execution cap holds under parallel requests."""
    conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 42))", (user_id,))


def claim_idempotency_key(conn: Connection, user_id: str, key: str,
                          request_hash: str) -> dict[str, Any] | None:
    """Claim the key; returns None if it is new, else the stored row (after its writer ends)."""
    row = conn.execute(
        """
        insert into aef_idempotency_keys (user_id, key, request_hash)
        values (%s, %s, %s) on conflict do nothing returning key
        """,
        (user_id, key, request_hash),
    ).fetchone()
    if row is not None:
        return None
    return conn.execute(
        "select request_hash, execution_id, response from aef_idempotency_keys"
        " where user_id = %s and key = %s",
        (user_id, key),
    ).fetchone()


def store_idempotent_response(conn: Connection, user_id: str, key: str, execution_id: str,
                              response: dict[str, Any]) -> None:
    conn.execute(
        "update aef_idempotency_keys set execution_id = %s, response = %s"
        " where user_id = %s and key = %s",
        (execution_id, Jsonb(response), user_id, key),
    )


def purge_idempotency_keys(conn: Connection, older_than_hours: int) -> int:
    cur = conn.execute(
        "delete from aef_idempotency_keys where created_at < now() - make_interval(hours => %s)",
        (older_than_hours,),
    )
    return cur.rowcount


# Documents -----------------------------------------------------------------------------------
def get_sop(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """The existing application's SOP, read under the caller's own RLS."""
    return conn.execute("select job_id, data from public.sops where job_id = %s",
                        (job_id,)).fetchone()


def insert_document(conn: Connection, user_id: str, sop_id: str | None, title: str,
                    document: dict[str, Any]) -> str:
    row = conn.execute(
        "insert into aef_documents (user_id, sop_id, title, document)"
        " values (%s, %s, %s, %s) returning id",
        (user_id, sop_id, title[:500], Jsonb(document)),
    ).fetchone()
    assert row is not None
    return str(row["id"])


def get_document(conn: Connection, document_id: str) -> dict[str, Any] | None:
    return conn.execute("select id, user_id, title, document from aef_documents where id = %s",
                        (document_id,)).fetchone()


# Executions ----------------------------------------------------------------------------------
def insert_execution(conn: Connection, user_id: str, document_id: str) -> str:
    row = conn.execute(
        "insert into aef_executions (user_id, document_id) values (%s, %s) returning id",
        (user_id, document_id),
    ).fetchone()
    assert row is not None
    return str(row["id"])


def get_execution(conn: Connection, execution_id: str, *, for_update: bool = False
                  ) -> ExecutionRow | None:
    return common.get_execution(conn, execution_id, _EXECUTION_COLUMNS,
                                class_row(ExecutionRow), for_update=for_update)


def count_active_executions(conn: Connection, user_id: str) -> int:
    row = conn.execute(
        "select count(*) as n from aef_executions where user_id = %s and status = any(%s)",
        (user_id, list(ACTIVE)),
    ).fetchone()
    return int(row["n"]) if row else 0


def queue_execution(conn: Connection, execution_id: str, *, step_ids: Sequence[str] | None,
                    runner_token_hash: bytes, resume_from: str | None,
                    variables: dict[str, str] | None = None) -> None:
    conn.execute(
        """
        update aef_executions set status = 'queued', step_ids = %s, runner_token_hash = %s,
          resume_from = %s, error = null, task_arn = null, stop_cleanup = null,
          variables = variables || %s
        where id = %s
        """,
        (list(step_ids) if step_ids else None, runner_token_hash, resume_from,
         Jsonb(variables or {}), execution_id),
    )


def set_task_arn(conn: Connection, execution_id: str, task_arn: str) -> None:
    conn.execute("update aef_executions set task_arn = %s where id = %s",
                 (task_arn, execution_id))


def set_status(conn: Connection, execution_id: str, status: str, *,
               error: dict[str, Any] | None = None, clear_error: bool = False) -> None:
    conn.execute(
        """
        update aef_executions set status = %s,
          error = case when %s then null else coalesce(%s, error) end
        where id = %s
        """,
        (status, clear_error, Jsonb(error) if error is not None else None, execution_id),
    )


def set_stop_cleanup(conn: Connection, execution_id: str, cleanup: str) -> None:
    conn.execute("update aef_executions set stop_cleanup = %s where id = %s",
                 (cleanup, execution_id))


def put_secrets(conn: Connection, execution_id: str, secrets: dict[str, str]) -> None:
    names = sorted(secrets)
    conn.execute(
        """
        insert into aef_execution_secrets (execution_id, secrets, names) values (%s, %s, %s)
        on conflict (execution_id) do update set secrets = %s, names = %s
        """,
        (execution_id, Jsonb(secrets), names, Jsonb(secrets), names),
    )


def input_names(conn: Connection, execution_id: str) -> tuple[set[str], set[str]]:
    """(variable names, secret names) an execution already holds; never a secret's value."""
    row = conn.execute(
        """
        select array(select jsonb_object_keys(
                 case when jsonb_typeof(e.variables) = 'object' then e.variables
                      else '{}'::jsonb end)) as variables,
               coalesce((select s.names from aef_execution_secrets s
                          where s.execution_id = e.id), '{}') as secrets
          from aef_executions e where e.id = %s
        """,
        (execution_id,),
    ).fetchone()
    if row is None:
        return set(), set()
    return set(row["variables"]), set(row["secrets"])


def emit_event(conn: Connection, execution_id: str, event_type: str,
               extras: dict[str, Any] | None = None) -> None:
    """Append to the outbox; the trigger numbers it, builds the live message and broadcasts."""
    common.append_event(conn, execution_id, event_type, extras or {})


def insert_command(conn: Connection, execution_id: str, command: str, step_id: str | None,
                   payload: dict[str, Any]) -> int:
    row = conn.execute(
        "insert into aef_commands (execution_id, command, step_id, payload)"
        " values (%s, %s, %s, %s) returning id",
        (execution_id, command, step_id, Jsonb(payload)),
    ).fetchone()
    assert row is not None
    return int(row["id"])


# Checkpoints ---------------------------------------------------------------------------------
def get_checkpoint(conn: Connection, checkpoint_id: str, *, for_update: bool = False
                   ) -> dict[str, Any] | None:
    lock = " for update" if for_update else ""
    return conn.execute(
        "select id, execution_id, step_id, iteration, type, status, default_action, response,"
        " responded_at, expires_at, (expires_at <= now()) as is_expired"
        f" from aef_checkpoints where id = %s{lock}",
        (checkpoint_id,),
    ).fetchone()


def answer_checkpoint(conn: Connection, checkpoint_id: str, status: str, user_id: str | None,
                      response: dict[str, Any]) -> None:
    """The trigger refuses a second answer (AEF02, carrying the first) and wakes the runner."""
    conn.execute(
        "update aef_checkpoints set status = %s, response = %s, responded_by = %s"
        " where id = %s",
        (status, Jsonb(response), user_id, checkpoint_id),
    )


# Reads ---------------------------------------------------------------------------------------
def page_logs(conn: Connection, execution_id: str, *, after: int, limit: int,
              level: str | None, step_id: str | None) -> list[dict[str, Any]]:
    """Keyset page: ids strictly after `after`, served by (execution_id[, level|step_id], id)."""
    clauses = ["execution_id = %(e)s", "id > %(after)s"]
    if level is not None:
        clauses.append("level = %(level)s")
    if step_id is not None:
        clauses.append("step_id = %(step)s")
    return conn.execute(
        "select id, created_at, level, category, message, step_id, details from aef_logs"
        f" where {' and '.join(clauses)} order by id limit %(limit)s",
        {"e": execution_id, "after": after, "level": level, "step": step_id, "limit": limit},
    ).fetchall()


def live_read(conn: Connection, execution_id: str, *, after: int, unchanged: Sequence[int],
              message_types: dict[str, str], recent_logs: int, max_events: int
              ) -> dict[str, Any] | None:
    """GET /live in one statement, on one snapshot: the execution's last_seq, and unless it is
    one of `unchanged` (the client's ETags) the live message (built by the same SQL the
    broadcast trigger uses; `message_types` maps a status to its message type), the events
    after `after` and the pending checkpoints' preview screenshot keys. None when the caller
    may not see it. `events` is the JSON text of the array: the route sends it on as it is."""
    fresh = "not (e.last_seq = any(%(unchanged)s::bigint[]))"
    return conn.execute(
        f"""
        select e.last_seq, e.browser, {fresh} as fresh,
          case when {fresh} then aef_private.live_message(e,
            coalesce(%(types)s::jsonb ->> e.status, 'execution_update'), e.last_seq,
            jsonb_build_object('logs', coalesce((select jsonb_agg(l.entry order by l.id) from (
              select id, {common.log_entry()}
              from aef_logs where execution_id = e.id order by id desc limit %(n)s) l),
              '[]'::jsonb))) end as message,
          case when {fresh} then coalesce((select jsonb_agg(v.message order by v.seq) from (
              select seq, message from aef_events where execution_id = e.id and seq > %(after)s
              order by seq limit %(max)s) v), '[]'::jsonb)::text end as events,
          case when {fresh} then coalesce((select jsonb_object_agg(c.id::text,
              c.preview ->> 'screenshotKey') from aef_checkpoints c
              where c.execution_id = e.id and c.status = 'pending'
                and c.preview ->> 'screenshotKey' is not null), '{{}}'::jsonb) end as previews
        from aef_executions e where e.id = %(e)s
        """,
        {"e": execution_id, "after": after, "unchanged": list(unchanged),
         "types": Jsonb(message_types), "n": recent_logs, "max": max_events},
    ).fetchone()


# Lists (newest first, keyset pages) ----------------------------------------------------------
def page_documents(conn: Connection, user_id: str, *, before: tuple[Any, str] | None,
                   limit: int) -> list[dict[str, Any]]:
    """The caller's documents after the cursor `(created_at, id)`, newest first; RLS also
    keeps every other user's rows out. Served by (user_id, created_at desc, id desc)."""
    keyset = "and (created_at, id) < (%(t)s, %(id)s)" if before else ""
    return conn.execute(
        "select id, title, sop_id, created_at from aef_documents"
        f" where user_id = %(user)s {keyset} order by created_at desc, id desc limit %(n)s",
        {"user": user_id, "t": before[0] if before else None,
         "id": before[1] if before else None, "n": limit},
    ).fetchall()


def page_executions(conn: Connection, user_id: str, *, before: tuple[Any, str] | None,
                    limit: int, statuses: Sequence[str] | None,
                    document_id: str | None) -> list[dict[str, Any]]:
    """The caller's executions after the cursor, newest first, with their document's title
    and how long they ran (seconds; until now while still running).

    The page is cut first (an index range of (user_id, created_at desc, id desc)) and only
    its rows are joined to their documents: joined before the limit, a planner that misjudges
    the user's document count sorts the user's whole history for every page.
    """
    clauses = ["user_id = %(user)s"]
    if before:
        clauses.append("(created_at, id) < (%(t)s, %(id)s)")
    if statuses:
        clauses.append("status = any(%(statuses)s)")
    if document_id:
        clauses.append("document_id = %(document)s")
    return conn.execute(
        f"""
        select e.id, e.document_id, d.title as document_title, e.status, e.progress,
          e.current_step_id, e.created_at, e.started_at, e.finished_at,
          extract(epoch from coalesce(e.finished_at, now()) - e.started_at)::float8 as duration
        from (select * from aef_executions where {" and ".join(clauses)}
              order by created_at desc, id desc limit %(n)s) e
        join aef_documents d on d.id = e.document_id
        order by e.created_at desc, e.id desc
        """,
        {"user": user_id, "t": before[0] if before else None,
         "id": before[1] if before else None, "statuses": list(statuses or []),
         "document": document_id, "n": limit},
    ).fetchall()


# Sweeper (service role) ----------------------------------------------------------------------
def expired_leases(conn: Connection, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        """
        select id, status, task_arn, step_ids from aef_executions
        where status in ('starting', 'running', 'paused', 'waiting_checkpoint',
                         'waiting_recovery', 'cancelling')
          and lease_expires_at < now()
        order by lease_expires_at limit %s for update skip locked
        """,
        (limit,),
    ).fetchall()


def dispatch_to_pool(conn: Connection, execution_id: str) -> bool:
    """Hand a queued execution to a pool worker with a free slot; False when none has one."""
    row = conn.execute("select aef_private.dispatch_to_pool(%s) as ok",
                       (execution_id,)).fetchone()
    return bool(row and row["ok"])


def pool_demand(conn: Connection) -> dict[str, int]:
    row = conn.execute("select * from aef_private.pool_demand()").fetchone()
    return {k: int(v or 0) for k, v in dict(row or {}).items()}


def stale_queued(conn: Connection, older_than_seconds: int, limit: int) -> list[dict[str, Any]]:
    """Queued executions no runner claimed: the launch was accepted but nothing came up."""
    return conn.execute(
        """
        select id, status, task_arn from aef_executions
        where status = 'queued' and updated_at < now() - make_interval(secs => %s)
        order by updated_at limit %s for update skip locked
        """,
        (older_than_seconds, limit),
    ).fetchall()


def last_completed_step(conn: Connection, execution_id: str) -> str | None:
    row = conn.execute(
        "select step_id from aef_execution_steps where execution_id = %s and status = 'completed'"
        " order by finished_at desc nulls last limit 1",
        (execution_id,),
    ).fetchone()
    return row["step_id"] if row else None


def expired_checkpoints(conn: Connection, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        """
        select id, execution_id, default_action from aef_checkpoints
        where status = 'pending' and expires_at < now()
        order by expires_at limit %s for update skip locked
        """,
        (limit,),
    ).fetchall()


def insert_log(conn: Connection, execution_id: str, level: str, category: str, message: str,
               step_id: str | None = None, details: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """One log line; returns its entry in the live-message shape."""
    record = common.LogRecord(level, category, message, step_id, details)
    return common.insert_logs(conn, execution_id, [record])[0]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
