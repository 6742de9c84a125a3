"""What every fault must leave intact: the outbox, its broadcast, the log lines, the step rows.

Read over the login (superuser) connection, i.e. beside RLS, so nothing can hide a loss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aef.db import Database
from tests.integration.factories import admin_connection

T = TypeVar("T")


def outbox_seqs(db: Database, execution_id: str) -> list[int]:
    """`array_agg(seq order by seq)` of the execution's events (empty list: no event)."""
    with admin_connection(db) as conn:
        row = conn.execute("select array_agg(seq order by seq) as seqs from aef_events"
                           " where execution_id = %s", (execution_id,)).fetchone()
    return list(row["seqs"] or []) if row else []


def assert_outbox_intact(db: Database, execution_id: str) -> int:
    """Event seq is 1..n with n = last_seq, and each event was broadcast exactly once.

    Returns n.
    """
    seqs = outbox_seqs(db, execution_id)
    with admin_connection(db) as conn:
        execution = conn.execute("select last_seq from aef_executions where id = %s",
                                 (execution_id,)).fetchone()
        broadcast = conn.execute(
            "select array_agg((payload->>'seq')::int order by (payload->>'seq')::int) as seqs"
            " from realtime.messages where topic = %s and extension = 'broadcast'",
            (f"execution:{execution_id}",)).fetchone()
    assert execution is not None and broadcast is not None
    n = int(execution["last_seq"])
    assert seqs == list(range(1, n + 1)), f"event seq is not 1..{n}: {seqs}"
    assert list(broadcast["seqs"] or []) == seqs, "every event is broadcast exactly once"
    return n


def log_ids(db: Database, execution_id: str) -> list[int]:
    with admin_connection(db) as conn:
        return [int(r["id"]) for r in conn.execute(
            "select id from aef_logs where execution_id = %s order by id",
            (execution_id,)).fetchall()]


def log_lines(db: Database, execution_id: str) -> list[dict[str, Any]]:
    with admin_connection(db) as conn:
        return [dict(r) for r in conn.execute(
            "select id, step_id, level, category, message, details from aef_logs"
            " where execution_id = %s order by id", (execution_id,)).fetchall()]


def execution_row(db: Database, execution_id: str) -> dict[str, Any]:
    with admin_connection(db) as conn:
        row = conn.execute("select * from aef_executions where id = %s",
                           (execution_id,)).fetchone()
    assert row is not None
    return dict(row)


def step_rows(db: Database, execution_id: str) -> dict[str, dict[str, Any]]:
    """Steps by id (the fault plans have no loops: iteration is 0)."""
    with admin_connection(db) as conn:
        rows = conn.execute("select * from aef_execution_steps where execution_id = %s",
                            (execution_id,)).fetchall()
    assert all(r["iteration"] == 0 for r in rows)
    return {r["step_id"]: dict(r) for r in rows}


def events(db: Database, execution_id: str) -> list[dict[str, Any]]:
    with admin_connection(db) as conn:
        return [dict(r) for r in conn.execute(
            "select seq, type, message from aef_events where execution_id = %s order by seq",
            (execution_id,)).fetchall()]


def assert_steps_journaled(db: Database, execution_id: str) -> None:
    """No state row lost: every step the log says completed has its completed row, and back."""
    steps = step_rows(db, execution_id)
    said_done = {line["step_id"] for line in log_lines(db, execution_id)
                 if line["message"].startswith("Step completed: ")}
    rows_done = {step_id for step_id, row in steps.items() if row["status"] == "completed"}
    assert said_done == rows_done, (said_done, rows_done)
    last = events(db, execution_id)[-1]["message"]["execution"]
    row = execution_row(db, execution_id)
    assert (last["status"], last["progress"]) == (row["status"], row["progress"]), \
        "the last event reports the stored state"




async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking call (a Mangum handler, a restart) in a worker thread with its own loop.

    Mangum runs each request with `asyncio.get_event_loop().run_until_complete`, which cannot
    happen on the test's running loop.
    """
    def call() -> T:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return fn(*args, **kwargs)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    return await asyncio.to_thread(call)
