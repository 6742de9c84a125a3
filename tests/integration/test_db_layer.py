"""aef.db against a real server: pooler-safe, identity per transaction, errors mapped.

Supabase's transaction pooler (Supavisor, port 6543) hands each transaction to any server
connection, so nothing may outlive a transaction: no server-side prepared statements and no
session-level settings. These tests pin a pool to a single connection and look at that
connection between transactions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from aef.db import Database, connect_kwargs, translate_error
from aef.errors import AefError, Conflict, ServiceUnavailable
from tests.conftest import TestBed
from tests.integration.factories import User, create_rows_in_every_table, create_user


@pytest.fixture
def single(supabase_db: Any) -> Iterator[Database]:
    """One connection per login, so every transaction of a login reuses the same session."""
    database = TestBed(supabase_db, max_size=1, others_max_size=1)
    yield database
    database.close()


def raw_session(database: Database) -> Any:
    """The pooled connection itself, outside any identity (what the next client inherits)."""
    database._ensure_open()
    return database._pool.connection(timeout=5)


def session_state(database: Database) -> dict[str, Any]:
    with raw_session(database) as conn:
        row = conn.execute(
            "select pg_backend_pid() as pid, current_user as current_user, "
            "session_user as session_user, "
            "coalesce(current_setting('request.jwt.claims', true), '') as claims, "
            "coalesce(current_setting('aef.execution_id', true), '') as execution_id, "
            "coalesce(current_setting('aef.runner_token', true), '') as runner_token, "
            "(select count(*) from pg_prepared_statements) as prepared").fetchone()
        conn.rollback()
    return dict(row)


def test_connections_are_pooler_safe() -> None:
    assert connect_kwargs()["prepare_threshold"] is None


def test_no_server_side_prepared_statements(single: Database, db: Database) -> None:
    user = create_user(db)
    pids = set()
    for i in range(10):
        with single.as_user(user.claims) as conn:
            row = conn.execute("select pg_backend_pid() as pid, %s::int + 1 as n, "
                               "auth.uid()::text as uid", (i,)).fetchone()
            assert row == {"pid": row["pid"], "n": i + 1, "uid": user.id}
            pids.add(row["pid"])
    with single.as_service() as conn:
        for _ in range(10):
            conn.execute("select count(*) from aef_executions where status = %s", ("running",))
        prepared = conn.execute("select count(*) as n from pg_prepared_statements").fetchone()
    assert len(pids) == 1, "the pool reused one connection"
    assert prepared == {"n": 0}
    assert session_state(single)["prepared"] == 0


def test_identity_is_applied_per_transaction(single: Database, db: Database) -> None:
    a, b = create_user(db), create_user(db)
    rows = create_rows_in_every_table(db, a)
    seen = []
    for tx in [single.as_user(a.claims), single.as_user(b.claims), single.as_service(),
               single.as_authenticated(a.claims), single.as_anon(),
               single.as_runner(rows.execution_id, rows.runner_token)]:
        with tx as conn:
            seen.append(conn.execute(
                "select current_user as role, "
                "nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub' as uid, "
                "nullif(current_setting('aef.execution_id', true), '') as runner").fetchone())
    assert seen == [
        {"role": "aef_api", "uid": a.id, "runner": None},
        {"role": "aef_api", "uid": b.id, "runner": None},
        {"role": "aef_service", "uid": None, "runner": None},
        {"role": "authenticated", "uid": a.id, "runner": None},
        {"role": "anon", "uid": None, "runner": None},
        {"role": "aef_runner", "uid": None, "runner": rows.execution_id},
    ]


def assert_clean(state: dict[str, Any], pid: int) -> None:
    assert state["pid"] == pid
    assert state["current_user"] == state["session_user"]
    assert state["claims"] == ""
    assert state["execution_id"] == "" and state["runner_token"] == ""


def test_identity_does_not_outlive_the_transaction(single: Database, db: Database) -> None:
    user: User = create_user(db)
    rows = create_rows_in_every_table(db, user)
    pid = session_state(single)["pid"]
    login = session_state(single)["session_user"]

    with single.as_user(user.claims) as conn:
        inside = conn.execute("select current_user as u, "
                              "current_setting('request.jwt.claims') as c").fetchone()
    assert inside is not None and inside["u"] == "aef_api" and user.id in inside["c"]
    state = session_state(single)
    assert_clean(state, pid)
    assert state["current_user"] == login

    with single.as_runner(rows.execution_id, rows.runner_token) as conn:
        conn.execute("select 1")
    assert_clean(session_state(single), pid)


def test_identity_is_dropped_after_a_failed_transaction(single: Database, db: Database) -> None:
    user = create_user(db)
    pid = session_state(single)["pid"]
    with pytest.raises(psycopg.errors.DivisionByZero):
        with single.as_user(user.claims) as conn:
            conn.execute("select 1 / 0")
    assert_clean(session_state(single), pid)
    with pytest.raises(RuntimeError):
        with single.as_authenticated(user.claims) as conn:
            conn.execute("select 1")
            raise RuntimeError("application error inside the transaction")
    assert_clean(session_state(single), pid)


def test_work_is_committed_or_rolled_back_as_a_whole(single: Database, db: Database) -> None:
    user = create_user(db)
    key = f"atomic-{uuid.uuid4().hex}"
    with pytest.raises(RuntimeError):
        with single.as_user(user.claims) as conn:
            conn.execute("insert into aef_idempotency_keys (user_id, key, request_hash) "
                         "values (%s, %s, 'h')", (user.id, key))
            raise RuntimeError("boom")
    with single.as_user(user.claims) as conn:
        assert conn.execute("select key from aef_idempotency_keys where key = %s",
                            (key,)).fetchall() == []
        conn.execute("insert into aef_idempotency_keys (user_id, key, request_hash) "
                     "values (%s, %s, 'h')", (user.id, key))
    with single.as_user(user.claims) as conn:
        assert conn.execute("select key from aef_idempotency_keys where key = %s",
                            (key,)).fetchall() == [{"key": key}]


# --- translate_error ------------------------------------------------------------------------------


def database_error(database_url: str, sql: str) -> psycopg.Error:
    """A real error raised by the server for `sql`."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            conn.execute(sql)  # literals from this file
        except psycopg.Error as exc:
            return exc
    raise AssertionError(f"no error from {sql!r}")


def raising(errcode: str, message: str = "refused", detail: str | None = None) -> str:
    using = f"errcode = '{errcode}'" + (f", detail = '{detail}'" if detail is not None else "")
    return f"do $$ begin raise exception '{message}' using {using}; end $$"


@pytest.mark.parametrize(("sql", "kind", "code", "extra"), [
    (raising("AEF01", "illegal execution transition running -> idle",
             '{"entity":"execution","from":"running","to":"idle"}'),
     Conflict, "illegal_transition",
     {"transition": {"entity": "execution", "from": "running", "to": "idle"}}),
    (raising("AEF01", "step identity is immutable"), Conflict, "illegal_transition", {}),
    (raising("AEF01", "odd detail", "not json"), Conflict, "illegal_transition", {}),
    (raising("AEF02", "checkpoint already answered",
             '{"status":"approved","response":{"ok":true},"respondedAt":"2026-01-01T00:00:00"}'),
     Conflict, "checkpoint_already_answered",
     {"firstDecision": {"status": "approved", "response": {"ok": True},
                        "respondedAt": "2026-01-01T00:00:00"}}),
    (raising("AEF02"), Conflict, "checkpoint_already_answered", {"firstDecision": {}}),
    (raising("AEF03", "aef_logs is append-only"), Conflict, "append_only", {}),
    (raising("40001"), Conflict, "concurrent_update", {}),
    (raising("40P01"), Conflict, "concurrent_update", {}),
    (raising("55P03"), ServiceUnavailable, "database_busy", {}),
    ("set statement_timeout = 1; select pg_sleep(1)", ServiceUnavailable, "database_busy", {}),
], ids=["AEF01", "AEF01-no-detail", "AEF01-bad-detail", "AEF02", "AEF02-no-detail", "AEF03",
        "serialization", "deadlock", "lock-not-available", "statement-timeout"])
def test_translate_error_maps_refusals(database_url: str, sql: str, kind: type[AefError],
                                       code: str, extra: dict[str, Any]) -> None:
    translated = translate_error(database_error(database_url, sql))
    assert isinstance(translated, kind)
    assert translated.code == code
    assert translated.extra == extra
    assert translated.status == (409 if kind is Conflict else 503)


def test_translate_error_keeps_the_message(database_url: str) -> None:
    translated = translate_error(database_error(
        database_url, raising("AEF01", "illegal step transition completed -> running")))
    assert translated is not None
    assert translated.detail == "illegal step transition completed -> running"


@pytest.mark.parametrize("sql", [
    "select 1 / 0",
    "select * from no_such_table",
    raising("23505"),
    raising("42501"),
    raising("P0001"),
])
def test_translate_error_leaves_bugs_alone(database_url: str, sql: str) -> None:
    """Anything else is our bug: a 500, not a client error."""
    assert translate_error(database_error(database_url, sql)) is None


def test_translate_error_maps_a_lost_connection() -> None:
    with pytest.raises(psycopg.OperationalError) as failed:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/postgres", connect_timeout=2)
    translated = translate_error(failed.value)
    assert isinstance(translated, ServiceUnavailable)
    assert translated.code == "database_unavailable" and translated.status == 503


def test_refusal_inside_a_transaction_surfaces_as_conflict(db: Database) -> None:
    with pytest.raises(Conflict) as refused:
        with db.as_service() as conn:
            conn.execute(raising("AEF03", "aef_events is append-only"))
    assert refused.value.code == "append_only"
    assert isinstance(refused.value.__cause__, psycopg.Error)


def test_unreachable_database_is_service_unavailable() -> None:
    """Nothing listens on port 1: the caller gets a 503, not a hang or a raw driver error."""
    database = Database("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2",
                        min_size=0, max_size=1)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceUnavailable) as unavailable:
            with database.as_service() as conn:
                conn.execute("select 1")
    finally:
        database.close()
    assert unavailable.value.code == "database_unavailable"
    assert unavailable.value.status == 503
    assert time.monotonic() - started < 30


# CI runs this module on Postgres 15 and 17 (scripts/test.sh)
pytestmark = pytest.mark.supabase
