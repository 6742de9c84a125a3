"""AEF on a database shaped like a hosted Supabase project, logged in as production does.

The cluster (tests/conftest.py) is Supabase's: `postgres` demoted to a non-superuser, auth and
realtime owned by Supabase's admin roles; AEF's migrations were applied as that `postgres`.
Runs on Postgres 15 and 17 (AEF_TEST_PG); CI runs it on both.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.api.helpers import ScriptedRunner, run_inputs, transform

pytestmark = pytest.mark.supabase


def one(url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def test_the_database_is_shaped_like_supabase(db: Any, database_url: str) -> None:
    # postgres exactly as Supabase demotes it, and the owner of AEF's tables (it migrated)
    assert one(database_url, "select row(rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, "
               "rolreplication, rolbypassrls)::text from pg_roles where rolname = 'postgres'"
               ) == "(f,t,t,t,t,t)"
    assert one(database_url, "select pg_get_userbyid(relowner) from pg_class "
               "where oid = 'public.aef_executions'::regclass") == "postgres"
    assert one(database_url, "select pg_get_userbyid(relowner) from pg_class "
               "where oid = 'auth.users'::regclass") == "supabase_auth_admin"
    assert one(database_url, "select row(pg_get_userbyid(relowner), relkind)::text "
               "from pg_class where oid = 'realtime.messages'::regclass"
               ) == "(supabase_realtime_admin,p)"
    # the logins the code under test uses: the functions' does not inherit
    assert one(db.url, "select session_user") == "aef_functions"
    assert one(db.url, "select rolinherit from pg_roles where rolname = session_user") is False
    assert one(db.runner_url, "select session_user") == "aef_runner_login"


def test_no_aef_role_relies_on_a_grant_on_schema_auth(database_url: str) -> None:
    """On Supabase `postgres` cannot grant on auth; only `authenticated` (inherited by aef_api)
    has USAGE, from Supabase itself."""
    for role, expected in [("aef_api", True), ("aef_runner", False), ("aef_service", False),
                           ("aef_functions", False), ("aef_runner_login", False)]:
        assert one(database_url, "select has_schema_privilege(%s, 'auth', 'USAGE')",
                   (role,)) is expected, role


def test_a_full_cycle_as_the_production_logins(api: Any, db: Any, new_user: Any) -> None:
    """transform → execute → checkpoint → live, through the Mangum handlers on aef_functions,
    with a scripted runner on aef_runner_login."""
    user = new_user()
    created = transform(api, user)
    execution_id = created["executionId"]
    reply = api.call("POST", "/api/aef/execute", user.token,
                     {"aefDocumentId": created["aefDocumentId"], "executionId": execution_id,
                      **run_inputs(created)})
    assert reply.status == 202, reply.body

    runner = ScriptedRunner(db, execution_id)
    with runner.tx() as conn:
        assert conn.execute("select session_user as s, current_user as c").fetchone() == {
            "s": "aef_runner_login", "c": "aef_runner"}
    runner.claim()
    runner.run_step("navigate_to_gmail", 20)
    checkpoint_id = runner.ask_checkpoint("enter_email")

    live = api.call("GET", f"/api/aef/live/{execution_id}", user.token)
    assert live.status == 200, live.body
    assert live.body["message"]["type"] == "checkpoint_required"
    assert [c["id"] for c in live.body["message"]["checkpoints"]] == [checkpoint_id]

    reply = api.call("POST", f"/api/aef/checkpoint/{checkpoint_id}", user.token,
                     {"response": "approve"})
    assert reply.status == 200, reply.body
    runner.resume_after_checkpoint()
    runner.complete()

    live = api.call("GET", f"/api/aef/live/{execution_id}", user.token)
    assert live.status == 200, live.body
    assert live.body["message"]["execution"]["status"] == "completed"
    # every live message went out through Supabase's realtime.send, privately
    with psycopg.connect(db.admin_url) as conn:
        sent = conn.execute("select count(*), bool_and(private) from realtime.messages "
                            "where topic = %s", (f"execution:{execution_id}",)).fetchone()
    assert sent is not None and sent[0] >= 5 and sent[1] is True


def test_postgres_may_not_act_as_the_roles_it_created(database_url: str,
                                                      supabase_cluster: Any) -> None:
    """On 16+ creating a role gives `postgres` ADMIN but not SET: operators can only
    `alter role ... login password` (README), never `set role`."""
    with psycopg.connect(database_url) as conn:
        if supabase_cluster.version == "15":
            conn.execute("select 1")  # 15: CREATEROLE never made postgres a member either
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("set role aef_functions")


def test_the_migration_says_what_to_do_without_admin_option(supabase_cluster: Any) -> None:
    """A 16+ project from before Supabase's June 2025 images: postgres lacks ADMIN OPTION on
    `authenticated`. On 15, CREATEROLE is enough and the migration goes through. A cluster of
    its own: roles are cluster-wide."""
    from local.supabase_pg import SupabaseCluster

    cluster = SupabaseCluster(supabase_cluster.version).start()
    try:
        if cluster.version == "15":
            urls = cluster.database("old_image", admin_option=False)
            assert one(urls.postgres, "select pg_has_role('aef_api', 'authenticated', "
                       "'MEMBER')") is True
            return
        with pytest.raises(psycopg.errors.RaiseException) as refused:
            cluster.database("old_image", admin_option=False)
        diag = refused.value.diag
        assert diag.message_primary == ("AEF setup: postgres may not grant the role "
                                        "authenticated to aef_api")
        assert "ADMIN OPTION" in (diag.message_detail or "")
        assert 'grant authenticated to aef_api;' in (diag.message_hint or "")
    finally:
        cluster.stop()
