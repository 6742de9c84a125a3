"""AEF lands next to an application that already has `sops` (and `jobs`) with data.

The migrations must leave those tables exactly as they were — definition, policies, grants,
triggers and rows — however many times they are applied; on a database without `sops` they
create it with owner-only RLS. The existing application's SOPs stay readable by the API
under the application's own policies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from aef.db import Database
from local.schema import apply_schema
from local.supabase_pg import enable_logins, with_user
from tests import fixtures
from tests.integration.factories import User, admin_connection, create_user

AEF_TABLES = ["aef_documents", "aef_executions", "aef_execution_steps", "aef_checkpoints",
              "aef_logs", "aef_events", "aef_commands", "aef_execution_secrets",
              "aef_rate_limits", "aef_idempotency_keys"]

# The existing application, as its own migrations created it (not AEF's shape on purpose:
# extra columns, other policy names, a policy for every role, a trigger, a FK to jobs).
EXISTING_APP = """
create table public.jobs (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id),
  status text not null default 'pending' check (status in ('pending', 'processing', 'done')),
  video_url text,
  created_at timestamptz default timezone('utc', now())
);
alter table public.jobs enable row level security;
create policy "Users manage their own jobs" on public.jobs
  for all using (auth.uid() = user_id) with check (auth.uid() = user_id);

create table public.sops (
  id uuid primary key default gen_random_uuid(),
  job_id uuid not null unique references public.jobs (id) on delete cascade,
  user_id uuid not null references auth.users (id),
  data jsonb not null,
  version varchar(16) default 'v0.8',
  edited_at timestamptz
);
create index sops_user_lookup on public.sops (user_id, job_id);
alter table public.sops enable row level security;
create policy "Users can view their own SOPs" on public.sops
  for select using (auth.uid() = user_id);
create policy "Users can update their own SOPs" on public.sops
  for update using (auth.uid() = user_id) with check (auth.uid() = user_id);
create policy "Service can do anything" on public.sops
  for all to service_role using (true);

create function public.sops_touch() returns trigger language plpgsql as $$
begin
  new.edited_at := now();
  return new;
end
$$;
create trigger sops_touch before update on public.sops
  for each row execute function public.sops_touch();
"""


def snapshot(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, Any]:
    """Everything that defines a table and its contents, from the catalogs."""
    shot: dict[str, Any] = {}
    for table in tables:
        regclass = f"public.{table}"
        shot[table] = {
            "columns": conn.execute(
                "select ordinal_position, column_name, data_type, udt_name, is_nullable, "
                "column_default, character_maximum_length, is_identity "
                "from information_schema.columns where table_schema = 'public' "
                "and table_name = %s order by ordinal_position", (table,)).fetchall(),
            "constraints": conn.execute(
                "select conname, contype, pg_get_constraintdef(oid) as def from pg_constraint "
                "where conrelid = %s::regclass order by conname", (regclass,)).fetchall(),
            "indexes": conn.execute(
                "select indexname, indexdef from pg_indexes where schemaname = 'public' "
                "and tablename = %s order by indexname", (table,)).fetchall(),
            "triggers": conn.execute(
                "select tgname, pg_get_triggerdef(oid) as def, tgenabled from pg_trigger "
                "where tgrelid = %s::regclass and not tgisinternal order by tgname",
                (regclass,)).fetchall(),
            "table": conn.execute(
                "select relrowsecurity, relforcerowsecurity, relowner::regrole::text as owner, "
                "coalesce(relacl::text, '') as acl from pg_class where oid = %s::regclass",
                (regclass,)).fetchone(),
            "policies": conn.execute(
                "select policyname, permissive, roles::text[] as roles, cmd, qual, with_check "
                "from pg_policies where schemaname = 'public' and tablename = %s "
                "order by policyname", (table,)).fetchall(),
            "rows": conn.execute(
                f"select coalesce(jsonb_agg(to_jsonb(t) order by t::text), '[]') as rows "
                f"from public.{table} t").fetchone(),
        }
    return shot


@pytest.fixture
def existing_app_db(supabase_cluster: Any) -> Iterator[str]:
    """A fresh Supabase-shaped database with the existing app, but no AEF yet (as `postgres`)."""
    name = f"aef_existing_{uuid.uuid4().hex[:10]}"
    try:
        yield supabase_cluster.database(name, migrate=False).postgres
    finally:
        supabase_cluster.drop(name)


def load_sop() -> dict[str, Any]:
    return fixtures.load_sop(fixtures.INVESTOR_CRM_SOP)


def seed_existing_app(url: str) -> tuple[list[str], list[str]]:
    """Two users, each with a job and an SOP; returns (user ids, job ids)."""
    users, jobs = [str(uuid.uuid4()), str(uuid.uuid4())], []
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.execute(EXISTING_APP)  # trusted literal above
        for user_id in users:
            conn.execute("insert into auth.users (id, email) values (%s, %s)",
                         (user_id, f"{user_id[:8]}@example.test"))
            job = conn.execute("insert into public.jobs (user_id, status) "
                               "values (%s, 'done') returning id", (user_id,)).fetchone()
            assert job is not None
            jobs.append(str(job["id"]))
            conn.execute("insert into public.sops (job_id, user_id, data) values (%s, %s, %s)",
                         (job["id"], user_id, Jsonb(load_sop())))
    return users, jobs


def test_migrations_twice_leave_existing_tables_untouched(existing_app_db: str) -> None:
    seed_existing_app(existing_app_db)
    with psycopg.connect(existing_app_db, row_factory=dict_row) as conn:
        before = snapshot(conn, ["sops", "jobs"])
    assert len(before["sops"]["rows"]["rows"]) == 2

    apply_schema(existing_app_db, shim=False)
    with psycopg.connect(existing_app_db, row_factory=dict_row) as conn:
        after_first = snapshot(conn, ["sops", "jobs", *AEF_TABLES])
    apply_schema(existing_app_db, shim=False)
    with psycopg.connect(existing_app_db, row_factory=dict_row) as conn:
        after_second = snapshot(conn, ["sops", "jobs", *AEF_TABLES])

    for table in ["sops", "jobs"]:
        for part in before[table]:
            assert after_first[table][part] == before[table][part], (table, part)
            assert after_second[table][part] == before[table][part], (table, part)
    # and the migrations themselves are idempotent
    for table in AEF_TABLES:
        assert after_first[table]["columns"], f"{table} was created"
        assert after_second[table] == after_first[table], table


def test_api_reads_existing_sops_under_their_own_policies(existing_app_db: str) -> None:
    """aef_api inherits `authenticated`, so the app's policies decide what the API may read."""
    users, jobs = seed_existing_app(existing_app_db)
    apply_schema(existing_app_db, shim=False)
    enable_logins(existing_app_db)
    database = Database(with_user(existing_app_db, "aef_functions"), min_size=0, max_size=2)
    try:
        claims = {"sub": users[0], "role": "authenticated", "aud": "authenticated"}
        with database.as_user(claims) as conn:
            seen = conn.execute("select job_id::text as job_id, data -> 'meta' ->> 'title' "
                                "as title from public.sops").fetchall()
        assert seen == [{"job_id": jobs[0],
                         "title": "Daily Investor Email Review and CRM Update"}]
        with database.as_user(claims) as conn:
            other = conn.execute("select 1 from public.sops where job_id = %s",
                                 (jobs[1],)).fetchall()
        assert other == []
    finally:
        database.close()


# --- a database without `sops`: the migration creates it ----------------------------------------


def test_migration_creates_sops_with_owner_only_rls(db: Database) -> None:
    with admin_connection(db) as conn:
        table = conn.execute("select relrowsecurity from pg_class "
                             "where oid = 'public.sops'::regclass").fetchone()
        columns = conn.execute(
            "select column_name, data_type, is_nullable from information_schema.columns "
            "where table_schema = 'public' and table_name = 'sops'").fetchall()
        policies = conn.execute("select cmd, roles::text[] as roles, qual, with_check "
                                "from pg_policies where tablename = 'sops' "
                                "and schemaname = 'public'").fetchall()
    assert table == {"relrowsecurity": True}
    shape = {c["column_name"]: (c["data_type"], c["is_nullable"]) for c in columns}
    assert shape["job_id"] == ("uuid", "NO")
    assert shape["user_id"] == ("uuid", "NO")
    assert shape["data"] == ("jsonb", "NO")
    assert {p["cmd"] for p in policies} == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    for policy in policies:
        assert policy["roles"] == ["authenticated"]
        for expr in (policy["qual"], policy["with_check"]):
            assert expr is None or ("auth.uid()" in expr and "user_id" in expr), policy


@pytest.fixture
def sop_owners(db: Database) -> tuple[User, User, str, str]:
    a, b = create_user(db), create_user(db)
    job_a, job_b = str(uuid.uuid4()), str(uuid.uuid4())
    with admin_connection(db) as conn:
        for user, job in [(a, job_a), (b, job_b)]:
            conn.execute("insert into public.sops (job_id, user_id, data) values (%s, %s, %s)",
                         (job, user.id, Jsonb(load_sop())))
    return a, b, job_a, job_b


def test_created_sops_are_owner_only(db: Database,
                                     sop_owners: tuple[User, User, str, str]) -> None:
    a, b, job_a, job_b = sop_owners
    with db.as_authenticated(a.claims) as conn:
        mine = conn.execute("select job_id::text as job_id from public.sops").fetchall()
        assert conn.execute("update public.sops set data = '{}' where job_id = %s",
                            (job_b,)).rowcount == 0
        assert conn.execute("delete from public.sops where job_id = %s", (job_b,)).rowcount == 0
    assert mine == [{"job_id": job_a}]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        with db.as_authenticated(a.claims) as conn:
            conn.execute("insert into public.sops (job_id, user_id, data) values (%s, %s, '{}')",
                         (str(uuid.uuid4()), b.id))
    with db.as_user(a.claims) as conn:
        via_api = conn.execute("select job_id::text as job_id from public.sops").fetchall()
    assert via_api == [{"job_id": job_a}]
    try:
        with db.as_anon() as conn:
            anon_rows = conn.execute("select job_id from public.sops").fetchall()
    except psycopg.errors.InsufficientPrivilege:
        anon_rows = []
    assert anon_rows == []
    with admin_connection(db) as conn:
        kept = conn.execute("select count(*) as n from public.sops where job_id = %s",
                            (job_b,)).fetchone()
    assert kept == {"n": 1}


# CI runs this module on Postgres 15 and 17 (scripts/test.sh)
pytestmark = pytest.mark.supabase
