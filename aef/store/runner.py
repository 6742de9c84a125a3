"""SQL of the runner: one function per query, every one run inside `Database.as_runner(...)`.

Role `aef_runner` sees only the execution whose id and token it presents (RLS), and may update
only the columns the migration grants it. State changes and the event that reports them are
written by the caller in the same transaction (`insert_event` after the change), so the live
view can never disagree with the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from aef.db import Connection
from aef.store import common
from aef.store.common import OPEN_STEP_STATES as OPEN_STEP_STATES
from aef.store.common import LogRecord as LogRecord
from aef.store.common import get_status as get_status

TERMINAL: Final = ("completed", "failed", "cancelled")

UNSET: Any = object()  # "leave this column alone" (None means SQL null)

_EXECUTION_COLUMNS = """
  id, user_id, document_id, status, step_ids, current_step_id, progress, variables, browser,
  error, last_seq, runner_id, lease_expires_at, heartbeat_at, resume_from, created_at,
  started_at, finished_at
"""

_CHECKPOINT_COLUMNS = """
  id, execution_id, step_id, iteration, type, title, description, status, default_action,
  timeout_seconds, expires_at, response, responded_at, (expires_at <= now()) as is_expired,
  greatest(0, extract(epoch from expires_at - now()))::float8 as seconds_left
"""


# Lease -----------------------------------------------------------------------------------------
def claim(conn: Connection, execution_id: str, runner_id: str,
          lease_seconds: float) -> dict[str, Any] | None:
    """queued -> starting with our lease; None when not claimable (wrong state or a live lease).

    `failed` is terminal for a runner (docs/architecture.md): a user's resume re-queues it
    first, so only `queued` is claimed here. The row lock makes two racing runners safe: the
    second re-checks the WHERE after the first commits and finds `starting`.
    """
    return conn.execute(
        f"""
        update aef_executions set status = 'starting', runner_id = %(runner)s,
          lease_expires_at = now() + make_interval(secs => %(lease)s), heartbeat_at = now(),
          started_at = coalesce(started_at, now()), error = null
        where id = %(id)s and status = 'queued'
          and (lease_expires_at is null or lease_expires_at < now() or runner_id = %(runner)s)
        returning {_EXECUTION_COLUMNS}
        """,
        {"id": execution_id, "runner": runner_id, "lease": float(lease_seconds)},
    ).fetchone()


def heartbeat(conn: Connection, execution_id: str, runner_id: str,
              lease_seconds: float) -> str | None:
    """Extend our lease; returns the current status (a `cancelling` is seen here too).

    None means the lease is no longer ours (another runner claimed it, or the row is gone).
    A terminal execution is not extended: its status is returned as is.
    """
    row = conn.execute(
        """
        update aef_executions set lease_expires_at = now() + make_interval(secs => %(lease)s),
          heartbeat_at = now()
        where id = %(id)s and runner_id = %(runner)s
          and status not in ('completed', 'failed', 'cancelled')
        returning status
        """,
        {"id": execution_id, "runner": runner_id, "lease": float(lease_seconds)},
    ).fetchone()
    if row is not None:
        return str(row["status"])
    row = conn.execute("select status, runner_id from aef_executions where id = %s",
                       (execution_id,)).fetchone()
    if row is None or row["runner_id"] != runner_id:
        return None
    return str(row["status"])


def hand_back_lease(conn: Connection, execution_id: str, runner_id: str) -> None:
    """End our lease now (a draining pool worker hands the execution back to the sweeper)."""
    conn.execute("update aef_executions set lease_expires_at = now() - interval '1 second'"
                 " where id = %s and runner_id = %s", (execution_id, runner_id))


def claim_for_pool(conn: Connection, worker_id: str) -> tuple[str, str] | None:
    """(execution id, its fresh runner token) of one execution dispatched to the pool."""
    row = conn.execute("select execution_id, runner_token from aef_private.claim_for_pool(%s)",
                       (worker_id,)).fetchone()
    return (str(row["execution_id"]), str(row["runner_token"])) if row else None


def pool_heartbeat(conn: Connection, worker_id: str, slots: int, active: int,
                   draining: bool) -> None:
    conn.execute("select aef_private.pool_heartbeat(%s, %s, %s, %s)",
                 (worker_id, slots, active, draining))


def pool_leave(conn: Connection, worker_id: str) -> None:
    conn.execute("select aef_private.pool_leave(%s)", (worker_id,))


def claim_by_task(conn: Connection, execution_id: str, task_arn: str) -> str | None:
    """The runner token for the ECS task `task_arn` of this execution, or None (the ARN is not
    stored yet, is another task's, was claimed already, or the execution is not queued)."""
    row = conn.execute("select aef_private.claim_by_task(%s, %s) as token",
                       (execution_id, task_arn)).fetchone()
    return str(row["token"]) if row and row["token"] else None


def claim_blocker(conn: Connection, execution_id: str) -> dict[str, Any] | None:
    """Why a claim was refused: the status and whether someone else's lease is live."""
    return conn.execute(
        "select status, runner_id, (lease_expires_at is not null and lease_expires_at > now())"
        " as lease_live from aef_executions where id = %s",
        (execution_id,),
    ).fetchone()


# Reads -----------------------------------------------------------------------------------------
def get_execution(conn: Connection, execution_id: str) -> dict[str, Any] | None:
    return common.get_execution(conn, execution_id, _EXECUTION_COLUMNS, dict_row)


def get_document(conn: Connection, document_id: str) -> dict[str, Any] | None:
    return conn.execute("select id, title, document from aef_documents where id = %s",
                        (document_id,)).fetchone()


def get_secrets(conn: Connection, execution_id: str) -> dict[str, str]:
    row = conn.execute("select secrets from aef_execution_secrets where execution_id = %s",
                       (execution_id,)).fetchone()
    if row is None or not isinstance(row["secrets"], dict):
        return {}
    return {str(k): str(v) for k, v in row["secrets"].items() if v is not None}


def get_steps(conn: Connection, execution_id: str) -> list[dict[str, Any]]:
    """Every step row of this execution (what a resume must not run again)."""
    return conn.execute(
        "select step_id, iteration, status, attempts, locator, result from aef_execution_steps"
        " where execution_id = %s order by step_id, iteration",
        (execution_id,),
    ).fetchall()


def cached_locator(conn: Connection, execution_id: str, step_id: str) -> dict[str, Any] | None:
    """The latest resolved locators of a completed run of this document step.

    Scope is this execution (earlier loop iterations, earlier attempts before a resume): RLS
    keeps a runner to its own execution, so cross-execution reuse would need the service to
    copy a cache at launch.
    """
    row = conn.execute(
        """
        select locator from aef_execution_steps
        where execution_id = %s and step_id = %s and status = 'completed' and locator is not null
        order by finished_at desc nulls last, iteration desc limit 1
        """,
        (execution_id, step_id),
    ).fetchone()
    return row["locator"] if row and isinstance(row["locator"], dict) else None


# Writes: execution -----------------------------------------------------------------------------
def update_execution(
    conn: Connection,
    execution_id: str,
    *,
    status: str | None = None,
    progress: int | None = None,
    current_step_id: str | None = UNSET,
    variables: Mapping[str, Any] | None = None,
    browser: Mapping[str, Any] | None = None,
    error: Mapping[str, Any] | None = UNSET,
) -> dict[str, Any] | None:
    """Patch the execution row; `browser` is merged into the stored object.

    Only the named keyword arguments change; the SQL is built from a fixed column list.
    The database refuses an illegal status transition (AEF01).
    """
    sets: list[str] = []
    params: dict[str, Any] = {"id": execution_id}
    if status == "running":
        # a stop requested meanwhile stands (cancelling -> running is illegal): the step's own
        # record still lands, and the runner ends at its next look at the stop
        sets.append("status = case when status = 'cancelling' then status else %(status)s end")
        params["status"] = status
    elif status is not None:
        sets.append("status = %(status)s")
        params["status"] = status
    if progress is not None:
        sets.append("progress = %(progress)s")
        params["progress"] = max(0, min(100, int(progress)))
    if current_step_id is not UNSET:
        sets.append("current_step_id = %(current)s")
        params["current"] = current_step_id
    if variables is not None:
        sets.append("variables = %(variables)s")
        params["variables"] = Jsonb(dict(variables))
    if browser is not None:
        sets.append("browser = browser || %(browser)s")
        params["browser"] = Jsonb(dict(browser))
    if error is not UNSET:
        sets.append("error = %(error)s")
        params["error"] = Jsonb(dict(error)) if error is not None else None
    if not sets:
        return get_execution(conn, execution_id)
    return conn.execute(
        f"update aef_executions set {', '.join(sets)} where id = %(id)s"
        f" returning {_EXECUTION_COLUMNS}",
        params,
    ).fetchone()


# Writes: steps ---------------------------------------------------------------------------------
def upsert_step(
    conn: Connection,
    execution_id: str,
    step_id: str,
    iteration: int,
    status: str,
    *,
    label: str | None = None,
    error: str | None = None,
    result: Mapping[str, Any] | None = None,
    locator: Mapping[str, Any] | None = None,
    new_attempt: bool = False,
) -> dict[str, Any]:
    """Create or move a step row; the guard trigger refuses an illegal transition (AEF01).

    `running` with `new_attempt` counts an attempt and stamps started_at; a final status
    stamps finished_at. `error` is cleared when a step starts again.
    """
    final = status in ("completed", "skipped", "cancelled", "failed")
    row = conn.execute(
        """
        insert into aef_execution_steps as s
          (execution_id, step_id, iteration, label, status, attempts, error, result, locator,
           started_at, finished_at)
        values (%(e)s, %(step)s, %(it)s, %(label)s, %(status)s, %(attempt)s::int, %(error)s,
                %(result)s, %(locator)s,
                case when %(status)s = 'running' then now() end,
                case when %(final)s then now() end)
        on conflict (execution_id, step_id, iteration) do update set
          status = excluded.status,
          label = coalesce(excluded.label, s.label),
          attempts = s.attempts + %(attempt)s::int,
          error = case when excluded.status = 'running' then null
                       else coalesce(excluded.error, s.error) end,
          result = coalesce(excluded.result, s.result),
          locator = coalesce(excluded.locator, s.locator),
          started_at = case when %(attempt)s::int > 0 then now() else s.started_at end,
          finished_at = case when %(final)s then now() else null end
        returning step_id, iteration, status, attempts
        """,
        {
            "e": execution_id, "step": step_id, "it": iteration, "label": label,
            "status": status, "attempt": 1 if new_attempt else 0, "error": error,
            "result": Jsonb(dict(result)) if result is not None else None,
            "locator": Jsonb(dict(locator)) if locator is not None else None,
            "final": final,
        },
    ).fetchone()
    assert row is not None
    return row


def cancel_open_steps(conn: Connection, execution_id: str, message: str) -> list[str]:
    """A stop: every step that had not finished becomes `cancelled` (`message` its error
    unless it has one)."""
    return common.cancel_open_steps(conn, execution_id, message)


# Writes: logs and events -----------------------------------------------------------------------
def insert_logs(conn: Connection, execution_id: str,
                records: Sequence[LogRecord]) -> list[dict[str, Any]]:
    """One multi-row INSERT for a batch (the engine's buffered lines)."""
    return common.insert_logs(conn, execution_id, records)


def insert_event(conn: Connection, execution_id: str, event_type: str, *,
                 logs: Sequence[Mapping[str, Any]] = (),
                 error: Mapping[str, Any] | None = None) -> int:
    """Append to the outbox; the trigger numbers it, composes the live message, broadcasts."""
    return common.append_event(conn, execution_id, event_type, _event_extras(logs, error))


def insert_event_returning_xid(conn: Connection, execution_id: str, event_type: str, *,
                               logs: Sequence[Mapping[str, Any]] = (),
                               error: Mapping[str, Any] | None = None) -> str:
    """`insert_event`, answering with `transaction_id` in the same round trip (the journal
    needs the id, not the seq)."""
    row = conn.execute(
        "insert into aef_events (execution_id, type, message) values (%s, %s, %s)"
        " returning pg_current_xact_id()::text as xid",
        (execution_id, event_type, Jsonb(_event_extras(logs, error))),
    ).fetchone()
    assert row is not None
    return str(row["xid"])


def _event_extras(logs: Sequence[Mapping[str, Any]],
                  error: Mapping[str, Any] | None) -> dict[str, Any]:
    extras: dict[str, Any] = {"logs": [dict(entry) for entry in logs]}
    if error is not None:
        extras["error"] = dict(error)
    return extras


def transaction_id(conn: Connection) -> str:
    """This transaction's id: if the connection drops during COMMIT, `transaction_status`
    tells afterwards whether it landed (so a retry never writes the same change twice)."""
    row = conn.execute("select pg_current_xact_id()::text as xid").fetchone()
    assert row is not None
    return str(row["xid"])


def transaction_status(conn: Connection, xid: str) -> str | None:
    """committed | aborted | in progress; None when the server no longer knows the id."""
    row = conn.execute("select pg_xact_status(%s::xid8) as status", (xid,)).fetchone()
    return str(row["status"]) if row and row["status"] is not None else None


# Checkpoints -----------------------------------------------------------------------------------
def insert_checkpoint(
    conn: Connection,
    execution_id: str,
    step_id: str,
    iteration: int,
    checkpoint_type: str,
    title: str,
    description: str | None,
    default_action: str,
    timeout_seconds: int,
    *,
    preview: Mapping[str, Any] | None = None,
    choices: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A pending checkpoint; a still-pending one for the same step run is reused (resume)."""
    existing = conn.execute(
        f"select {_CHECKPOINT_COLUMNS} from aef_checkpoints where execution_id = %s"
        " and step_id = %s and iteration = %s and status = 'pending'",
        (execution_id, step_id, iteration),
    ).fetchone()
    if existing is not None:
        return existing
    row = conn.execute(
        f"""
        insert into aef_checkpoints (execution_id, step_id, iteration, type, title, description,
          default_action, timeout_seconds, expires_at, preview, choices)
        values (%s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s), %s, %s)
        returning {_CHECKPOINT_COLUMNS}
        """,
        (execution_id, step_id, iteration, checkpoint_type, title[:500], description,
         default_action, timeout_seconds, timeout_seconds,
         Jsonb(dict(preview)) if preview is not None else None,
         Jsonb([dict(c) for c in choices])),
    ).fetchone()
    assert row is not None
    return row


def get_checkpoint(conn: Connection, checkpoint_id: str) -> dict[str, Any] | None:
    return conn.execute(f"select {_CHECKPOINT_COLUMNS} from aef_checkpoints where id = %s",
                        (checkpoint_id,)).fetchone()


def expire_checkpoint(conn: Connection, checkpoint_id: str) -> dict[str, Any] | None:
    """pending -> expired once its time is up (None if it was answered or is not due yet)."""
    return conn.execute(
        f"""
        update aef_checkpoints set status = 'expired',
          response = jsonb_build_object('defaultAction', default_action, 'reason', 'timeout')
        where id = %s and status = 'pending' and expires_at <= now()
        returning {_CHECKPOINT_COLUMNS}
        """,
        (checkpoint_id,),
    ).fetchone()


# Commands --------------------------------------------------------------------------------------
def pending_commands(conn: Connection, execution_id: str) -> list[dict[str, Any]]:
    return conn.execute(
        "select id, command, step_id, payload, created_at from aef_commands"
        " where execution_id = %s and status = 'pending' order by id",
        (execution_id,),
    ).fetchall()


def finish_command(conn: Connection, command_id: int, status: str) -> None:
    """done | rejected; only a pending command changes (a command is handled once)."""
    conn.execute(
        "update aef_commands set status = %s, handled_at = now()"
        " where id = %s and status = 'pending'",
        (status, command_id),
    )


def poll(conn: Connection, execution_id: str) -> dict[str, Any] | None:
    """The polling backstop in one round trip: status and the newest pending command id."""
    return conn.execute(
        """
        select e.status, (select max(c.id) from aef_commands c
                          where c.execution_id = e.id and c.status = 'pending') as last_command
        from aef_executions e where e.id = %s
        """,
        (execution_id,),
    ).fetchone()


def skip_open_steps(conn: Connection, execution_id: str, iteration: int) -> list[str]:
    """A loop item skipped at a checkpoint: the item's unfinished steps become `skipped`."""
    rows = conn.execute(
        """
        update aef_execution_steps set status = 'skipped', finished_at = now()
        where execution_id = %s and iteration = %s
          and status in ('pending', 'running', 'waiting_checkpoint')
        returning step_id
        """,
        (execution_id, iteration),
    ).fetchall()
    return [r["step_id"] for r in rows]


def release_lease(conn: Connection, execution_id: str, runner_id: str) -> bool:
    """A paused runner that closed its browser lets go: no live runner, nothing for the
    sweeper to fail; a user's resume queues a new runner."""
    row = conn.execute(
        "update aef_executions set lease_expires_at = null where id = %s and runner_id = %s"
        " and status = 'paused' returning id",
        (execution_id, runner_id),
    ).fetchone()
    return row is not None


def fail_open_steps(conn: Connection, execution_id: str, message: str) -> list[str]:
    """A failed run: steps caught mid-way become `failed`, so a resume runs them again; an
    error the runner already wrote for a step stays."""
    return common.fail_open_steps(conn, execution_id, message, keep_error=True)


def close_pending_checkpoints(conn: Connection, execution_id: str, reason: str) -> int:
    """A cancelled execution asks nothing any more: its open checkpoints expire."""
    cur = conn.execute(
        """
        update aef_checkpoints set status = 'expired',
          response = jsonb_build_object('reason', %s::text)
        where execution_id = %s and status = 'pending'
        """,
        (reason, execution_id),
    )
    return cur.rowcount
