"""PostgreSQL for `aef dev`: DATABASE_URL, else the local server, else an embedded one; the
database made ready (shim + migrations, tracked like the Supabase CLI) with its dev users."""


from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from local.pgcheck import Unusable, check
from local.state import DEV_USERS, DevUser, StackError, StateDir

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EMBEDDED_PREFERRED_PORT = 54322  # Supabase's local database port




def server_answers(url: str, timeout: int = 3) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            conn.execute("select 1")
    except psycopg.Error:
        return False
    return True


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """`preferred` when nobody listens there, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise StackError("no free TCP port")


def postgres_bin_dir() -> Path | None:
    """The newest Debian server binaries, else whatever `pg_ctl` is on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name
                                  .split(".")])
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


class EmbeddedPostgres:
    """A private PostgreSQL cluster in `.aef/pgdata`, started and stopped with the stack.

    initdb with trust authentication for the `postgres` role, listening on 127.0.0.1 only.
    PostgreSQL refuses to run as root, so when we are root the cluster belongs to the
    `postgres` system user (Debian's postgresql package creates it) and the binaries run
    through `runuser`.
    """

    def __init__(self, data_dir: Path, log_file: Path, bin_dir: Path | None = None,
                 superuser: str = "postgres") -> None:
        self.data_dir = data_dir
        self.superuser = superuser
        self.log_file = log_file
        self.bin_dir = bin_dir or postgres_bin_dir()
        if self.bin_dir is None:
            raise StackError("No PostgreSQL server found: set DATABASE_URL, start a server on "
                             "127.0.0.1:5432, or install Debian's `postgresql` package "
                             "(scripts/bootstrap.sh does it)")
        self.port = 0
        self.started_here = False
        self._owner = self._server_user()

    @staticmethod
    def _server_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise StackError("Running as root, and there is no `postgres` system user to run "
                             "the embedded PostgreSQL as; install Debian's `postgresql` "
                             "package or run as a normal user") from None

    @property
    def url(self) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner.pw_name, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                cwd="/", timeout=120)
        if check and result.returncode != 0:
            raise StackError(f"{args[0]} failed: {(result.stderr or result.stdout).strip()}")
        return result

    def _chown(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _running_port(self) -> int | None:
        """The port of a server already running on this data folder (a previous stack)."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        if self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode != 0:
            return None
        lines = pid_file.read_text().splitlines()
        return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None

    def start(self) -> str:
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
            self._chown(self.data_dir)
            self._run("initdb", "-D", str(self.data_dir), "-U", self.superuser, "--auth=trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions")
        running = self._running_port()
        if running is not None:
            self.port = running
            self.started_here = True  # left over from a stack that did not stop: ours now
            return self.url
        self.port = free_port(preferred=EMBEDDED_PREFERRED_PORT)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch()
        self._chown(self.log_file)
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k ''"
        self._run("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                  "-w", "-t", "60", "-o", options)
        self.started_here = True
        return self.url

    def stop(self) -> None:
        if self.started_here:
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
                      check=False)
            self.started_here = False


@dataclass
class PostgresServer:
    admin_url: str
    source: str  # DATABASE_URL | local | embedded
    embedded: EmbeddedPostgres | None = None

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def resolve_postgres(explicit_url: str | None, state: StateDir, *,
                     embedded_only: bool = False,
                     url_name: str = "DATABASE_URL") -> PostgresServer:
    """The server the stack uses, in the documented order (or the embedded one when asked).

    `url_name` is where the explicit URL came from (DATABASE_URL or --database-url), so the
    message about a server that cannot be used names what to fix.
    """
    if explicit_url and not embedded_only:
        try:
            check(explicit_url, name=url_name)
        except Unusable as exc:
            raise StackError(str(exc)) from None
        return PostgresServer(explicit_url, "DATABASE_URL")
    if not embedded_only and server_answers(LOCAL_SERVER_URL):
        return PostgresServer(LOCAL_SERVER_URL, "local")
    embedded = EmbeddedPostgres(state.pgdata, state.logs / "postgres.log")
    url = embedded.start()
    for _ in range(50):
        if server_answers(url):
            break
        time.sleep(0.1)
    else:
        embedded.stop()
        raise StackError(f"the embedded PostgreSQL did not answer; see {embedded.log_file}")
    return PostgresServer(url, "embedded", embedded)


def redact_url(url: str) -> str:
    """A connection URL without its password, for printing."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    if info.get("password"):
        info["password"] = "***"  # noqa: S105 - a mask, not a password
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The database: create, shim + migrations (tracked like the Supabase CLI), dev users
# --------------------------------------------------------------------------------------------


@dataclass
class DatabaseReport:
    url: str
    name: str
    created: bool
    applied: list[str] = field(default_factory=list)  # migrations applied this time
    reapplied: list[str] = field(default_factory=list)  # changed since they were applied
    tables: list[str] = field(default_factory=list)


_MIGRATIONS_TABLE = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text not null primary key,
  statements text[],
  name text
);
"""


def prepare_database(admin_url: str, name: str, *, reset: bool = False) -> DatabaseReport:
    """Create `name` if absent, apply the shim and every migration not yet applied.

    Applied migrations are recorded in `supabase_migrations.schema_migrations` as the
    Supabase CLI does; a migration whose text changed since is applied again (migrations are
    written to be re-runnable), so a developer editing one sees the change.
    """
    from local.schema import apply_fixture, apply_sql_file, migration_files, with_dbname

    created = False
    with psycopg.connect(admin_url, autocommit=True) as conn:
        try:
            if reset:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                    sql.Identifier(name)))
            exists = conn.execute("select 1 from pg_database where datname = %s",
                                  (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                created = True
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0]
            raise StackError(f"Cannot {'reset' if reset else 'create'} the database {name} "
                             f"on that server: {reason}; use a role that may (CREATEDB) or "
                             "pass --embedded-postgres") from None
    url = with_dbname(admin_url, name)
    report = DatabaseReport(url, name, created)
    with psycopg.connect(url, autocommit=True) as conn:
        apply_fixture(conn)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_MIGRATIONS_TABLE)
        recorded = {row[0]: (row[1] or [None])[0] for row in conn.execute(
            "select version, statements from supabase_migrations.schema_migrations")}
    for path in migration_files():
        version, _, label = path.stem.partition("_")
        text = path.read_text()
        if version in recorded and recorded[version] == text:
            continue
        try:
            apply_sql_file(url, path)
        except psycopg.Error as exc:
            raise StackError(f"migration {path.name} failed: {exc}; if you edited an applied "
                             "migration, start again with `aef dev --reset-db`") from exc
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "insert into supabase_migrations.schema_migrations (version, statements, name) "
                "values (%s, %s, %s) on conflict (version) do update "
                "set statements = excluded.statements, name = excluded.name",
                (version, [text], label))
        (report.reapplied if version in recorded else report.applied).append(path.name)
    with psycopg.connect(url) as conn:
        report.tables = [row[0] for row in conn.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'public' and table_name like 'aef\\_%' order by 1")]
    return report


def ensure_dev_users(url: str, users: tuple[DevUser, ...] = DEV_USERS) -> dict[str, str]:
    """Insert the dev users into auth.users (once); returns email -> id."""
    ids: dict[str, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for user in users:
            conn.execute(
                "insert into auth.users (instance_id, id, aud, role, email, email_confirmed_at, "
                "raw_app_meta_data, raw_user_meta_data) "
                "values ('00000000-0000-0000-0000-000000000000', %s, 'authenticated', "
                "'authenticated', %s, now(), %s, %s) on conflict do nothing",
                (user.default_id, user.email,
                 json.dumps({"provider": "email", "providers": ["email"]}),
                 json.dumps({"name": user.name})))
            row = conn.execute("select id from auth.users where lower(email) = lower(%s)",
                               (user.email,)).fetchone()
            assert row is not None
            ids[user.email] = str(row[0])
    return ids


def production_logins(url: str) -> tuple[str, str]:
    """The functions' and the runners' URLs: aef_functions and aef_runner_login, as in
    production, when the server lets them in without a password (the local and embedded
    servers trust loopback); else `url` for both. Only a server on this machine gets the two
    roles turned into logins, and no password is ever set here."""
    from local.supabase_pg import with_user

    logins = (with_user(url, "aef_functions"), with_user(url, "aef_runner_login"))
    host = str(psycopg.conninfo.conninfo_to_dict(url).get("host") or "")
    try:
        if host in ("", "127.0.0.1", "localhost", "::1") or host.startswith("/"):
            with psycopg.connect(url, autocommit=True) as conn:
                for role in ("aef_functions", "aef_runner_login"):
                    row = conn.execute("select rolcanlogin from pg_roles where rolname = %s",
                                       (role,)).fetchone()
                    if row is not None and not row[0]:
                        conn.execute(sql.SQL("alter role {} login").format(
                            sql.Identifier(role)))
        for login in logins:
            with psycopg.connect(login, connect_timeout=3):
                pass
    except psycopg.Error:
        return url, url
    return logins


def lookup_user(url: str, email: str) -> str | None:
    """The id of an auth.users row by email, or None."""
    with psycopg.connect(url, connect_timeout=3) as conn:
        row = conn.execute("select id from auth.users where lower(email) = lower(%s) "
                           "and deleted_at is null", (email,)).fetchone()
    return str(row[0]) if row else None

