"""Row-level security: who can see and change which AEF rows.

Two users, A and B, each own rows in every AEF table (A has two executions). Every statement
runs in its own transaction that is always rolled back, so the matrix cells are independent.
The identities are the ones production uses:

- `authenticated` + claims: exactly what supabase-js can do straight against PostgREST;
- `anon`: a caller with no session;
- `aef_api` + claims (`db.as_user`): the functions acting for the caller;
- `aef_runner` + execution id + token (`db.as_runner`): the runner of one execution.

A refused write is either "permission denied" (no privilege) or a statement that matches no
row (RLS hides it); both leave the data as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from aef.db import Database
from tests.integration.factories import (
    OwnedRows,
    User,
    admin_connection,
    create_rows_in_every_table,
    create_user,
)


@dataclass(frozen=True)
class Table:
    """How to address one AEF table in the matrix."""

    name: str
    key: str  # SQL expression naming one row
    scope: str  # WHERE clause selecting one execution's (or user's) rows
    touch: str  # a SET clause that is a legal, harmless change
    insert: str  # INSERT of a new row into that execution (or for that user)
    users_read: bool  # `authenticated` may SELECT its own rows
    runner_reads: bool  # the runner may SELECT its execution's rows


TABLES = [
    Table("aef_documents", "id::text", "id = %(document_id)s", "title = title",
          "insert into aef_documents (user_id, title, document) "
          "values (%(user_id)s, 'intruder', '{}')",
          users_read=True, runner_reads=True),
    Table("aef_executions", "id::text", "id = %(execution_id)s", "progress = progress",
          "insert into aef_executions (user_id, document_id) "
          "values (%(user_id)s, %(document_id)s)",
          users_read=True, runner_reads=True),
    Table("aef_execution_steps", "execution_id::text || '/' || step_id || '/' || iteration",
          "execution_id = %(execution_id)s", "attempts = attempts",
          "insert into aef_execution_steps (execution_id, step_id) "
          "values (%(execution_id)s, 'intruder')",
          users_read=True, runner_reads=True),
    Table("aef_checkpoints", "id::text", "execution_id = %(execution_id)s",
          "status = 'skipped'",
          "insert into aef_checkpoints (execution_id, step_id, type, title) "
          "values (%(execution_id)s, 'intruder', 'manual', 'intruder')",
          users_read=True, runner_reads=True),
    Table("aef_logs", "id::text", "execution_id = %(execution_id)s", "level = level",
          "insert into aef_logs (execution_id, message) values (%(execution_id)s, 'intruder')",
          users_read=True, runner_reads=True),
    Table("aef_events", "execution_id::text || '/' || seq", "execution_id = %(execution_id)s",
          "type = type",
          "insert into aef_events (execution_id, type, message) "
          "values (%(execution_id)s, 'error', '{}')",
          users_read=True, runner_reads=True),
    Table("aef_commands", "id::text", "execution_id = %(execution_id)s", "status = status",
          "insert into aef_commands (execution_id, command) values (%(execution_id)s, 'stop')",
          users_read=False, runner_reads=True),
    Table("aef_execution_secrets", "execution_id::text", "execution_id = %(execution_id)s",
          "secrets = secrets",
          "insert into aef_execution_secrets (execution_id, secrets) "
          "values (%(execution_id)s, '{}')",
          users_read=False, runner_reads=True),
    Table("aef_rate_limits", "user_id::text || '/' || bucket", "user_id = %(user_id)s",
          "tokens = tokens",
          "insert into aef_rate_limits (user_id, bucket, tokens) "
          "values (%(user_id)s, 'intruder', 1)",
          users_read=False, runner_reads=False),
    Table("aef_idempotency_keys", "user_id::text || '/' || key", "user_id = %(user_id)s",
          "response = response",
          "insert into aef_idempotency_keys (user_id, key, request_hash) "
          "values (%(user_id)s, 'intruder', 'h')",
          users_read=False, runner_reads=False),
]
TABLE_IDS = [t.name for t in TABLES]
WRITES = ["insert", "update", "delete"]


@dataclass(frozen=True)
class World:
    a: User
    b: User
    a1: OwnedRows  # A's first execution (the runner tests hold this one)
    a2: OwnedRows  # A's second execution
    b1: OwnedRows


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    a, b = create_user(db), create_user(db)
    return World(a=a, b=b, a1=create_rows_in_every_table(db, a),
                 a2=create_rows_in_every_table(db, a), b1=create_rows_in_every_table(db, b))


@dataclass
class Outcome:
    denied: str | None  # the "permission denied" / RLS message, if refused
    rowcount: int
    rows: list[dict[str, Any]]


def attempt(tx: Any, sql: str, params: dict[str, Any] | None = None) -> Outcome:
    """One statement in its own transaction, always rolled back; what did the database say?"""
    rows: list[dict[str, Any]] = []
    rowcount = 0
    try:
        with tx as conn:
            cur = conn.execute(sql, params or {})
            rowcount = cur.rowcount
            rows = cur.fetchall() if cur.description else []
            raise psycopg.Rollback()
    except psycopg.errors.InsufficientPrivilege as exc:
        return Outcome(denied=str(exc), rowcount=0, rows=[])
    return Outcome(denied=None, rowcount=rowcount, rows=rows)


def params_of(rows: OwnedRows) -> dict[str, Any]:
    return {"user_id": rows.user.id, "execution_id": rows.execution_id,
            "document_id": str(rows.document["id"])}


def keys_where(db: Database, table: Table, where: str, params: dict[str, Any]) -> set[str]:
    """The truth, read as aef_service (sees every row)."""
    with db.as_service() as conn:
        found = conn.execute(f"select {table.key} as k from {table.name} where {where}",
                             params).fetchall()
    return {r["k"] for r in found}


def owned_keys(db: Database, table: Table, user: User) -> set[str]:
    return keys_where(db, table, "user_id = %(user_id)s", {"user_id": user.id})


def visible_keys(tx: Any, table: Table) -> Outcome:
    return attempt(tx, f"select {table.key} as k from {table.name}")


def write_sql(table: Table, op: str) -> str:
    if op == "insert":
        return table.insert
    if op == "update":
        return f"update {table.name} set {table.touch} where {table.scope}"
    return f"delete from {table.name} where {table.scope}"


def assert_refused(outcome: Outcome) -> None:
    assert outcome.denied is not None or outcome.rowcount == 0, outcome


# --- authenticated: supabase-js straight against the database ----------------------------------


@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_authenticated_reads_exactly_own_rows(db: Database, world: World, table: Table) -> None:
    outcome = visible_keys(db.as_authenticated(world.a.claims), table)
    if table.users_read:
        assert outcome.denied is None
        mine = owned_keys(db, table, world.a)
        assert mine, "the fixture gave A rows in this table"
        assert {r["k"] for r in outcome.rows} == mine
        assert not ({r["k"] for r in outcome.rows} & owned_keys(db, table, world.b))
    else:
        assert outcome.denied is not None and "permission denied" in outcome.denied


@pytest.mark.parametrize("op", WRITES)
@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_authenticated_writes_nothing(db: Database, world: World, table: Table,
                                      op: str) -> None:
    """Not even its own rows: every AEF write goes through the functions."""
    before = owned_keys(db, table, world.a)
    outcome = attempt(db.as_authenticated(world.a.claims), write_sql(table, op),
                      params_of(world.a1))
    if op == "insert":
        assert outcome.denied is not None, "an insert by a supabase-js user must be refused"
    else:
        assert_refused(outcome)
    assert owned_keys(db, table, world.a) == before


def test_authenticated_cannot_read_secrets_commands_or_bookkeeping(
        db: Database, world: World) -> None:
    for name in ["aef_execution_secrets", "aef_commands", "aef_rate_limits",
                 "aef_idempotency_keys"]:
        for sql in [f"select * from {name}", f"select count(*) from {name}"]:
            outcome = attempt(db.as_authenticated(world.a.claims), sql)
            assert outcome.denied is not None and "permission denied" in outcome.denied, name


def test_runner_settings_do_not_widen_a_user_role(db: Database, world: World) -> None:
    """A supabase-js user cannot borrow the runner's scope by setting its GUCs."""
    outcome = attempt(db.as_authenticated(world.a.claims),
                      "select aef_private.runner_execution_id() as id")
    assert outcome.denied is None and outcome.rows == [{"id": None}]
    with db.as_authenticated(world.a.claims) as conn:
        conn.execute("select set_config('aef.execution_id', %s, true), "
                     "set_config('aef.runner_token', %s, true)",
                     (world.b1.execution_id, world.b1.runner_token))
        seen = conn.execute("select id from aef_executions where id = %s",
                            (world.b1.execution_id,)).fetchall()
    assert seen == [], "a runner token does not widen what a user role may read"


# --- anon ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_anon_reads_nothing(db: Database, world: World, table: Table) -> None:
    outcome = visible_keys(db.as_anon(), table)
    assert outcome.denied is not None or outcome.rows == [], outcome


@pytest.mark.parametrize("op", WRITES)
@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_anon_writes_nothing(db: Database, world: World, table: Table, op: str) -> None:
    outcome = attempt(db.as_anon(), write_sql(table, op), params_of(world.a1))
    if op == "insert":
        assert outcome.denied is not None
    else:
        assert_refused(outcome)


# --- aef_api: the functions acting for the caller -------------------------------------------------


@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_api_reads_exactly_own_rows(db: Database, world: World, table: Table) -> None:
    outcome = visible_keys(db.as_user(world.a.claims), table)
    assert outcome.denied is None, outcome.denied
    assert {r["k"] for r in outcome.rows} == owned_keys(db, table, world.a)


@pytest.mark.parametrize("op", WRITES)
@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_api_cannot_write_other_users_rows(db: Database, world: World, table: Table,
                                           op: str) -> None:
    """B's rows are invisible to A: updates and deletes match nothing, inserts are refused."""
    before = owned_keys(db, table, world.b)
    outcome = attempt(db.as_user(world.a.claims), write_sql(table, op), params_of(world.b1))
    if op == "insert":
        assert outcome.denied is not None, "A must not add rows to B's execution"
    else:
        assert_refused(outcome)
    assert owned_keys(db, table, world.b) == before


@pytest.mark.parametrize("op", ["update", "delete"])
@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_api_unscoped_writes_reach_only_own_rows(db: Database, world: World, table: Table,
                                                 op: str) -> None:
    """A statement without WHERE still touches A's rows only (or is not allowed at all)."""
    sql = (f"update {table.name} set {table.touch}" if op == "update"
           else f"delete from {table.name}")
    outcome = attempt(db.as_user(world.a.claims), sql)
    if outcome.denied is None:
        assert outcome.rowcount == len(owned_keys(db, table, world.a))


def test_api_does_change_own_rows(db: Database, world: World) -> None:
    """The writes the functions rely on are allowed for the caller's own rows."""
    p = params_of(world.a1)
    allowed = [
        "insert into aef_documents (user_id, title, document) "
        "values (%(user_id)s, 'mine', '{}')",
        "insert into aef_executions (user_id, document_id) values (%(user_id)s, %(document_id)s)",
        "update aef_executions set progress = 50 where id = %(execution_id)s",
        "update aef_checkpoints set status = 'approved', response = '{\"ok\": true}' "
        "where execution_id = %(execution_id)s",
        "insert into aef_events (execution_id, type, message) "
        "values (%(execution_id)s, 'execution_update', '{}')",
        "insert into aef_commands (execution_id, command) values (%(execution_id)s, 'pause')",
        "insert into aef_execution_secrets (execution_id, secrets) "
        "values (%(execution_id)s, '{\"pw\": \"x\"}') "
        "on conflict (execution_id) do update set secrets = '{\"pw\": \"y\"}'",
        "delete from aef_execution_secrets where execution_id = %(execution_id)s",
        "update aef_rate_limits set tokens = tokens - 1 where user_id = %(user_id)s",
        "insert into aef_idempotency_keys (user_id, key, request_hash) "
        "values (%(user_id)s, 'fresh', 'h')",
        "delete from aef_idempotency_keys where user_id = %(user_id)s",
    ]
    for sql in allowed:
        outcome = attempt(db.as_user(world.a.claims), sql, p)
        assert outcome.denied is None, (sql, outcome.denied)
        assert outcome.rowcount >= 1, sql


def test_api_cannot_read_secrets_back(db: Database, world: World) -> None:
    """The API writes secrets; only the runner of that execution reads them."""
    outcome = attempt(db.as_user(world.a.claims), "select secrets from aef_execution_secrets")
    assert outcome.denied is not None


def test_api_cannot_hand_a_row_to_another_user(db: Database, world: World) -> None:
    p = {**params_of(world.a1), "b": world.b.id}
    outcome = attempt(db.as_user(world.a.claims),
                      "update aef_rate_limits set user_id = %(b)s where user_id = %(user_id)s", p)
    assert outcome.denied is not None


LIVE_MESSAGE_CHECKPOINTS = (
    "select aef_private.live_message(jsonb_populate_record(null::public.aef_executions, "
    "jsonb_build_object('id', %(execution_id)s::uuid)), 'execution_update', 1, '{}') "
    "-> 'checkpoints' as checkpoints")


@pytest.mark.parametrize("role", ["authenticated", "aef_api"])
def test_live_message_helper_shows_only_own_checkpoints(db: Database, world: World,
                                                        role: str) -> None:
    """The helper that builds live messages cannot be pointed at another user's execution."""
    def tx() -> Any:
        return (db.as_authenticated(world.a.claims) if role == "authenticated"
                else db.as_user(world.a.claims))

    other = attempt(tx(), LIVE_MESSAGE_CHECKPOINTS, params_of(world.b1))
    assert other.denied is not None or other.rows == [{"checkpoints": []}], other
    own = attempt(tx(), LIVE_MESSAGE_CHECKPOINTS, params_of(world.a1))
    if own.denied is None:
        [row] = own.rows
        assert [c["id"] for c in row["checkpoints"]] == [str(world.a1.checkpoint["id"])]


def test_live_message_helper_runner_sees_only_its_execution(db: Database, world: World) -> None:
    runner = db.as_runner(world.a1.execution_id, world.a1.runner_token)
    assert attempt(runner, LIVE_MESSAGE_CHECKPOINTS, params_of(world.a2)).rows == [
        {"checkpoints": []}]


# --- aef_runner: one execution, by id and token ---------------------------------------------------


@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_runner_sees_only_its_execution(db: Database, world: World, table: Table) -> None:
    held = world.a1
    outcome = visible_keys(db.as_runner(held.execution_id, held.runner_token), table)
    if not table.runner_reads:
        assert outcome.denied is not None
        return
    assert outcome.denied is None, outcome.denied
    expected = keys_where(db, table, table.scope, params_of(held))
    assert expected
    assert {r["k"] for r in outcome.rows} == expected
    # not even the same user's other execution
    assert not ({r["k"] for r in outcome.rows} & keys_where(db, table, table.scope,
                                                           params_of(world.a2)))


@pytest.mark.parametrize("table", [t for t in TABLES if t.runner_reads],
                         ids=[t.name for t in TABLES if t.runner_reads])
@pytest.mark.parametrize("credentials", ["wrong-token", "other-execution", "no-token"])
def test_runner_without_the_right_token_sees_nothing(db: Database, world: World, table: Table,
                                                     credentials: str) -> None:
    execution_id, token = {
        "wrong-token": (world.a1.execution_id, world.a1.runner_token + "x"),
        "other-execution": (world.b1.execution_id, world.a1.runner_token),
        "no-token": (world.a1.execution_id, ""),
    }[credentials]
    outcome = visible_keys(db.as_runner(execution_id, token), table)
    assert outcome.denied is None and outcome.rows == []


@pytest.mark.parametrize("op", WRITES)
@pytest.mark.parametrize("table", TABLES, ids=TABLE_IDS)
def test_runner_cannot_write_other_executions(db: Database, world: World, table: Table,
                                              op: str) -> None:
    held, other = world.a1, world.a2
    before = keys_where(db, table, table.scope, params_of(other))
    outcome = attempt(db.as_runner(held.execution_id, held.runner_token), write_sql(table, op),
                      params_of(other))
    if op == "insert":
        assert outcome.denied is not None
    else:
        assert_refused(outcome)
    assert keys_where(db, table, table.scope, params_of(other)) == before


# --- Realtime: private channel authorization -----------------------------------------------------


def realtime_can_read(db: Database, role: str, claims: dict[str, Any], topic: str) -> bool:
    """Supabase Realtime's read check for a private channel, step by step.

    Mirrors Realtime.Tenants.Authorization (get_read_policies_for_connection): in one
    transaction, insert a probe message for the topic with the server's own connection role,
    then `set_config` role, realtime.topic, request.jwt.claims and request.headers
    (transaction-local), SELECT the probe back under that role, and roll back. Readable means
    the user may join the channel and receive its broadcasts.
    """
    with psycopg.connect(db.admin_url, row_factory=dict_row, prepare_threshold=None) as conn:
        probe = conn.execute(
            "insert into realtime.messages (topic, extension, event, private) "
            "values (%s, 'broadcast', 'probe', true) returning id", (topic,)).fetchone()
        assert probe is not None
        conn.execute(
            "select set_config('role', %s, true), set_config('realtime.topic', %s, true), "
            "set_config('request.jwt.claims', %s, true), set_config('request.headers', %s, true)",
            (role, topic, json.dumps(claims), "{}"))
        rows = conn.execute(
            "select id from realtime.messages "
            "where topic = %s and extension = 'broadcast' and id = %s",
            (topic, probe["id"])).fetchall()
        conn.rollback()
    return len(rows) == 1


def realtime_can_write(db: Database, role: str, claims: dict[str, Any], topic: str) -> bool:
    """Realtime's write check (get_write_policies_for_connection): with the user's role and
    claims set, try to insert a broadcast message for the topic; roll back either way."""
    with psycopg.connect(db.admin_url, prepare_threshold=None) as conn:
        conn.execute(
            "select set_config('role', %s, true), set_config('realtime.topic', %s, true), "
            "set_config('request.jwt.claims', %s, true), set_config('request.headers', %s, true)",
            (role, topic, json.dumps(claims), "{}"))
        try:
            with conn.transaction():  # a savepoint, as Realtime's Repo.insert(mode: :savepoint)
                conn.execute("insert into realtime.messages (topic, extension, event, private) "
                             "values (%s, 'broadcast', 'probe', true)", (topic,))
            allowed = True
        except psycopg.errors.InsufficientPrivilege:
            allowed = False
        conn.rollback()
    return allowed


def test_realtime_probe_own_topic_is_readable(db: Database, world: World) -> None:
    topic = f"execution:{world.a1.execution_id}"
    assert realtime_can_read(db, "authenticated", world.a.claims, topic)


def test_realtime_probe_other_users_topic_returns_nothing(db: Database, world: World) -> None:
    topic = f"execution:{world.b1.execution_id}"
    assert not realtime_can_read(db, "authenticated", world.a.claims, topic)
    assert realtime_can_read(db, "authenticated", world.b.claims, topic)


@pytest.mark.parametrize("topic", ["execution:not-a-uuid", "execution:", "room:lobby",
                                   "EXECUTION:{id}", "execution:{id}:extra"])
def test_realtime_probe_refuses_other_topics(db: Database, world: World, topic: str) -> None:
    assert not realtime_can_read(db, "authenticated", world.a.claims,
                                 topic.format(id=world.a1.execution_id))


def test_realtime_probe_anon_reads_nothing(db: Database, world: World) -> None:
    topic = f"execution:{world.a1.execution_id}"
    assert not realtime_can_read(db, "anon", {"role": "anon"}, topic)


@pytest.mark.parametrize("whose", ["own", "other"])
def test_users_cannot_broadcast_into_execution_channels(db: Database, world: World,
                                                        whose: str) -> None:
    """Only the database (the event trigger) speaks on execution:<id>; clients just listen."""
    rows = world.a1 if whose == "own" else world.b1
    assert not realtime_can_write(db, "authenticated", world.a.claims,
                                  f"execution:{rows.execution_id}")


def test_realtime_probe_leaves_no_message(db: Database, world: World) -> None:
    topic = f"execution:{world.a2.execution_id}"
    realtime_can_read(db, "authenticated", world.a.claims, topic)
    with admin_connection(db) as conn:
        probes = conn.execute("select count(*) as n from realtime.messages "
                              "where topic = %s and event = 'probe'", (topic,)).fetchone()
    assert probes == {"n": 0}



# CI runs this module on Postgres 15 and 17 (scripts/test.sh)
pytestmark = pytest.mark.supabase
