"""Test harness: a private cluster shaped like a hosted Supabase project, logged in as production.

A cluster whose bootstrap superuser is `supabase_admin` (local/supabase_pg.py) gets the
Supabase fixture (local/shim.sql), which demotes `postgres` to a non-superuser; AEF's
migrations run as that `postgres`, which then enables the two production logins. The code
under test connects as those logins: the functions as `aef_functions` (NOINHERIT), the runner
as `aef_runner_login`, supabase-js's side through PostgREST's `authenticator`. Tests seed
auth.users and inspect rows as `postgres`, the operator's role.

AEF_TEST_PG picks the server's major version: 15 (Debian's, the default) or 17 (new Supabase
projects; scripts/pg17.sh installs it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aef.db import Database

PG_VERSION = os.environ.get("AEF_TEST_PG", "15")
# The server the e2e tests' `aef dev` uses (a plain PostgreSQL, superuser `postgres`).
ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_report_header() -> str:
    return f"AEF: Supabase-shaped PostgreSQL {PG_VERSION} (AEF_TEST_PG)"


class TestBed(Database):
    """The functions' pool (aef_functions) plus the other logins, each used as production does.

    `as_runner` goes through the runner's login and `as_authenticated` / `as_anon` through
    PostgREST's `authenticator`: the functions' login may not assume those roles.
    `admin_url` is `postgres`: auth.users and inspection.
    """

    __test__ = False

    def __init__(self, urls: Any, *, max_size: int = 8, others_max_size: int = 4) -> None:
        super().__init__(urls.functions, min_size=1, max_size=max_size)
        self.admin_url: str = urls.postgres
        self.runner_url: str = urls.runner
        self.runner = Database(urls.runner, min_size=0, max_size=others_max_size)
        self.postgrest = Database(urls.authenticator, min_size=0, max_size=others_max_size)

    def as_runner(self, execution_id: str, runner_token: str) -> Any:
        return self.runner.as_runner(execution_id, runner_token)

    def as_authenticated(self, claims: Any) -> Any:
        return self.postgrest.as_authenticated(claims)

    def as_anon(self) -> Any:
        return self.postgrest.as_anon()

    def close(self) -> None:
        self.runner.close()
        self.postgrest.close()
        super().close()


@pytest.fixture(scope="session")
def supabase_cluster() -> Iterator[Any]:
    from local.supabase_pg import SupabaseCluster

    cluster = SupabaseCluster(PG_VERSION).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def supabase_db(supabase_cluster: Any) -> Any:
    """The test run's database: fixture + migrations, production logins enabled."""
    return supabase_cluster.database(f"aef_test_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def database_url(supabase_db: Any) -> str:
    """`postgres` on the test database: the operator's role (not a superuser)."""
    return str(supabase_db.postgres)


@pytest.fixture(scope="session")
def runner_database_url(supabase_db: Any) -> str:
    """What a runner task's DATABASE_URL names: the aef_runner_login login."""
    return str(supabase_db.runner)


@pytest.fixture(scope="session")
def functions_database_url(supabase_db: Any) -> str:
    """What the functions' DATABASE_URL names: the aef_functions login."""
    return str(supabase_db.functions)


@pytest.fixture(scope="session")
def db(supabase_db: Any) -> Iterator[TestBed]:
    from aef.db import set_database

    database = TestBed(supabase_db)
    set_database(database)
    yield database
    set_database(None)
    database.close()
