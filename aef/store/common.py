"""Queries both stores run: `aef.store.api` (the functions and the sweeper) and
`aef.store.runner` (the runner, under its execution's identity).

One definition each; where the two callers want different behaviour, the difference is a
parameter the caller names (which columns, whether a step's own error is kept), never a
second copy of the SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from psycopg.rows import RowFactory
from psycopg.types.json import Jsonb

from aef.db import Connection

Row = TypeVar("Row")

# The wire format of every timestamp the database composes (live messages, log entries):
# UTC, milliseconds, a literal Z.
TIMESTAMP_FORMAT: Final = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'

# Steps a stop turns into `cancelled` (a finished step keeps its outcome).
OPEN_STEP_STATES: Final = ("pending", "running", "waiting_checkpoint", "failed")
# Steps caught mid-way when a run fails.
RUNNING_STEP_STATES: Final = ("running", "waiting_checkpoint")
# The database's bounds of a log line (aef_logs checks); longer text is cut to fit.
MAX_MESSAGE: Final = 8000
MAX_CATEGORY: Final = 64


def utc_timestamp(column: str) -> str:
    """SQL: `column` (timestamptz) as the wire's timestamp text."""
    return f"to_char({column} at time zone 'utc', '{TIMESTAMP_FORMAT}')"


def log_entry(alias: str = "entry") -> str:
    """SQL: an `aef_logs` row as the log entry of live messages and events (jsonb)."""
    return f"""jsonb_build_object('id', id, 'timestamp', {utc_timestamp('created_at')},
      'level', level, 'category', category, 'message', message, 'stepId', step_id,
      'details', details) as {alias}"""


@dataclass(frozen=True)
class LogRecord:
    """One log line to write (already redacted by the writer)."""

    level: str
    category: str
    message: str
    step_id: str | None = None
    details: Mapping[str, Any] | None = None


def insert_logs(conn: Connection, execution_id: str,
                records: Sequence[LogRecord]) -> list[dict[str, Any]]:
    """One multi-row INSERT for a batch; returns the entries in the live-message shape, in
    the order written."""
    if not records:
        return []
    rows_sql = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(records))
    params: list[Any] = []
    for r in records:
        params += [execution_id, r.step_id, r.level, r.category[:MAX_CATEGORY],
                   r.message[:MAX_MESSAGE],
                   Jsonb(dict(r.details)) if r.details is not None else None]
    rows = conn.execute(
        "insert into aef_logs (execution_id, step_id, level, category, message, details)"
        f" values {rows_sql} returning id, {log_entry()}",
        params,
    ).fetchall()
    return [dict(r["entry"]) for r in sorted(rows, key=lambda r: int(r["id"]))]


# Executions ------------------------------------------------------------------------------------
def get_execution(conn: Connection, execution_id: str, columns: str,
                  row_factory: RowFactory[Row], *, for_update: bool = False) -> Row | None:
    """The execution's `columns` (each store reads the ones its role may see), made into a
    row by `row_factory`."""
    lock = " for update" if for_update else ""
    with conn.cursor(row_factory=row_factory) as cur:
        return cur.execute(f"select {columns} from aef_executions where id = %s{lock}",
                           (execution_id,)).fetchone()


def get_status(conn: Connection, execution_id: str) -> str | None:
    """Just the status, without a lock."""
    row = conn.execute("select status from aef_executions where id = %s",
                       (execution_id,)).fetchone()
    return str(row["status"]) if row else None


def append_event(conn: Connection, execution_id: str, event_type: str,
                 extras: Mapping[str, Any]) -> int:
    """Append to the outbox; the trigger numbers it (the returned seq), composes the live
    message and broadcasts."""
    row = conn.execute(
        "insert into aef_events (execution_id, type, message) values (%s, %s, %s)"
        " returning seq",
        (execution_id, event_type, Jsonb(dict(extras))),
    ).fetchone()
    assert row is not None
    return int(row["seq"])


# Steps -----------------------------------------------------------------------------------------
def fail_open_steps(conn: Connection, execution_id: str, message: str, *,
                    keep_error: bool) -> list[str]:
    """Steps caught mid-way become `failed` (so a resume runs them again).

    `keep_error`: a step that already holds an error keeps it (the runner, which wrote it);
    else `message` replaces it (the sweeper: the runner is gone, that is the step's fate).
    """
    error = "coalesce(error, %s)" if keep_error else "%s"
    rows = conn.execute(
        f"""
        update aef_execution_steps set status = 'failed', finished_at = now(), error = {error}
        where execution_id = %s and status = any(%s)
        returning step_id
        """,
        (message, execution_id, list(RUNNING_STEP_STATES)),
    ).fetchall()
    return [r["step_id"] for r in rows]


def cancel_open_steps(conn: Connection, execution_id: str,
                      message: str | None = None) -> list[str]:
    """A stop: every step that had not finished becomes `cancelled`; `message` becomes the
    error of a step that has none (None: errors stay as they are)."""
    rows = conn.execute(
        """
        update aef_execution_steps set status = 'cancelled', finished_at = now(),
          error = coalesce(error, %s)
        where execution_id = %s and status = any(%s)
        returning step_id
        """,
        (message, execution_id, list(OPEN_STEP_STATES)),
    ).fetchall()
    return [r["step_id"] for r in rows]
