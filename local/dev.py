"""`aef dev`: the whole backend on one machine, no Docker, no cloud account.

One process serves one port (default 54321, Supabase's local API port, so the default
`AEF_SUPABASE_URL` is right):

- `/api/aef/...`          the functions, routed by template.yaml through `local.gateway`
                          (API Gateway v2 events -> each function's Mangum handler)
- `/auth/v1/.well-known/jwks.json`  the public half of the local ES256 signing key
- `/auth/v1/token|user|logout`      password sign-in for the dev users (`local.auth`)
- `/console/`                        the operator console (`console/`, `local.console`)
- `/realtime/v1/websocket`          the Realtime-protocol server (`local.realtime`)
- `/mail/`, `/crm/`, `/demo/`       the demo web site the demo workflow runs against
- `/health`                          `{"status": "ok"}` once every part answers

Beside it: PostgreSQL (DATABASE_URL, else the local server on 127.0.0.1:5432, else an
embedded server started from Debian's /usr/lib/postgresql/*/bin into `.aef/pgdata`: the same
binaries bootstrap.sh installs, so it works offline with no extra download), S3 as
moto's server with the screenshot bucket, its writes journaled in `.aef/s3/` and replayed at
the next start (`local.s3`), runners launched as subprocesses (`python -m runner`), and the
sweeper every 15 s. Everything the stack creates lives in the git-ignored state folder `.aef/`
(keys, logs, pgdata, s3, stack.json, screenshots).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import uvicorn
from psycopg import sql

from local import s3
from local.keys import JWKS_PATH, SigningKey, issuer_for, jwks_route, load_or_create, mint_anon_key
from local.pgcheck import Unusable, check
from local.s3 import LOCAL_AWS_CREDENTIALS, S3Server

if TYPE_CHECKING:
    from aef.launcher import LocalLauncher

log = logging.getLogger("aef.dev")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / ".aef"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 54321
DEFAULT_DATABASE = "aef_dev"
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EMBEDDED_PREFERRED_PORT = 54322  # Supabase's local database port
SWEEP_EVERY_SECONDS = 15.0
RUNNER_STOP_GRACE_SECONDS = 0.5  # on shutdown, runners get this long to write their end
# a page served from any local port (Vite, the console, a static server); AEF_CORS_ORIGINS wins
LOCAL_CORS_ORIGINS = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
JWKS_REFRESH_SECONDS = 60.0
_DEV_USER_NAMESPACE = uuid.UUID("6f1f3c2e-4b7a-4d0e-9a57-2f4c8e1d9b30")


class StackError(RuntimeError):
    """The stack cannot start; the message tells the person what to do."""


# --------------------------------------------------------------------------------------------
# State folder and the stack description other commands read
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateDir:
    """`.aef/` by default: git-ignored, everything the local stack creates."""

    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def screenshots(self) -> Path:
        return self.root / "screenshots"

    @property
    def runner_work(self) -> Path:
        return self.root / "runner"

    @property
    def s3(self) -> Path:
        """The local S3 server's journal (the stored screenshots) and port."""
        return self.root / "s3"

    @property
    def stack_file(self) -> Path:
        return self.root / "stack.json"

    def ensure(self) -> None:
        for path in (self.root, self.keys, self.logs, self.screenshots, self.runner_work,
                     self.s3):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StackError(f"Cannot create the state folder {path}: {exc.strerror}; "
                                 "pass --state-dir with a folder you can write") from None


@dataclass(frozen=True)
class DevUser:
    email: str
    name: str

    @property
    def default_id(self) -> str:
        """A stable id, so a token minted before a restart still names the same user."""
        return str(uuid.uuid5(_DEV_USER_NAMESPACE, self.email.lower()))


DEV_USERS = (DevUser("demo@aef.local", "Demo User"), DevUser("reviewer@aef.local", "Reviewer"))


@dataclass
class StackInfo:
    """What a running `aef dev` tells other commands (`.aef/stack.json`)."""

    pid: int
    supabase_url: str
    database_url: str
    database_name: str
    postgres: str  # DATABASE_URL | local | embedded
    s3_endpoint_url: str
    screenshot_bucket: str
    screenshot_prefix: str
    anon_key: str
    users: dict[str, str]  # email -> id
    started_at: str
    log_dir: str

    @property
    def api_url(self) -> str:
        return self.supabase_url

    @property
    def console_url(self) -> str:
        return f"{self.supabase_url}/console/"

    @property
    def realtime_url(self) -> str:
        ws = self.supabase_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return f"{ws}/realtime/v1/websocket"

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> StackInfo | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------
# PostgreSQL: DATABASE_URL, else the local server, else an embedded one
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Configuration handed to the functions and the runners
# --------------------------------------------------------------------------------------------


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found


def export_environment(values: dict[str, str | None]) -> None:
    """Put the stack's configuration in this process's environment.

    Why the environment: runners are subprocesses that inherit it (`LocalLauncher` copies
    `os.environ`), and every function builds its `Settings` from it, exactly as a Lambda or a
    Fargate task is configured. `None` removes a variable (e.g. the HS256 secret: the stack
    accepts only tokens signed by the local key, as the cloud accepts only Supabase's).
    """
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    from aef.settings import get_settings

    get_settings.cache_clear()


# --------------------------------------------------------------------------------------------
# The ASGI app
# --------------------------------------------------------------------------------------------


class StackApp:
    """One ASGI app: functions (through the gateway), JWKS, Realtime, health, demo site."""

    def __init__(self, *, gateway: Any, realtime: Any, demo: Any, key: SigningKey,
                 auth: Any = None, console: Any = None, jwks_url: str, jwks_ttl: float,
                 sweeper: Callable[[], Any] | None,
                 on_ready: Callable[[], None]) -> None:
        from starlette.routing import Route, Router

        self.gateway = gateway
        self.realtime = realtime
        self.demo = demo
        self.console = console
        self.key = key
        self.jwks_url = jwks_url
        self.jwks_ttl = jwks_ttl
        self.sweeper = sweeper
        self.on_ready = on_ready
        self.ready = False
        self.serving = asyncio.Event()  # set by the server once its socket accepts
        self._tasks: list[asyncio.Task[None]] = []
        self.router = Router(routes=[jwks_route(key),
                                     Route("/health", self._health, methods=["GET"]),
                                     *(auth.routes() if auth is not None else []),
                                     *realtime.routes])

    async def _health(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok" if self.ready else "starting"},
                            status_code=200 if self.ready else 503)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith("/api/"):
            await self.gateway(scope, receive, send)
        elif (path in (JWKS_PATH, "/health") or path.startswith("/realtime/")
              or path.startswith("/auth/v1/")):
            await self.router(scope, receive, send)
        elif self.console is not None and (path == "/console" or path.startswith("/console/")):
            await self.console(scope, receive, send)
        else:
            await self.demo(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        try:
            await self.realtime.start()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        self._tasks.append(asyncio.create_task(self._keys_then_ready()))
        if self.sweeper is not None:
            self._tasks.append(asyncio.create_task(self._sweep_forever()))
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.realtime.stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def _keys_then_ready(self) -> None:
        """Warm the process's JWKS cache over HTTP, from a worker thread, and keep it warm.

        The Realtime server checks tokens on the event loop; if its cache were cold it would
        fetch the JWKS from this very server while blocking the loop that must answer. So the
        cache is filled (and refreshed before it goes stale) from a thread, through the same
        URL and code the functions use in the cloud; the stack reports ready only after that.
        """
        from aef.auth import default_jwks

        await self.serving.wait()
        while True:
            try:
                found = await asyncio.to_thread(default_jwks.get, self.jwks_url, self.key.kid,
                                                self.jwks_ttl)
            except Exception as exc:
                log.error("could not read the local JWKS", extra={"error": str(exc)})
                await asyncio.sleep(default_jwks.min_refetch_seconds)
                continue
            if found is None:
                log.error("the local JWKS does not contain the signing key")
            elif not self.ready:
                self.ready = True
                self.on_ready()
            await asyncio.sleep(self.jwks_ttl)

    async def _sweep_forever(self) -> None:
        assert self.sweeper is not None
        while True:
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
            try:
                await asyncio.to_thread(self.sweeper)
            except Exception:
                log.exception("sweeper run failed")


def scheduled_event(rule: str) -> dict[str, Any]:
    """The EventBridge event a Schedule rule delivers to its function."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "local",
        "resources": [f"arn:aws:events:local:000000000000:rule/{rule}"],
        "detail": {},
    }


class _StopServing(Exception):
    """Raised by the signal handler that uvicorn hands a captured SIGINT/SIGTERM back to."""


def _stop_serving(signum: int, frame: Any) -> None:
    raise _StopServing(signum)


class _Server(uvicorn.Server):
    """uvicorn, telling the app when its socket is accepting connections."""

    def __init__(self, config: uvicorn.Config, app: StackApp) -> None:
        super().__init__(config)
        self.stack_app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.stack_app.serving.set()


# --------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------


@dataclass
class DevOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = None  # the server; None: the documented fallbacks
    database_url_name: str = "DATABASE_URL"  # where it came from, for messages
    database_name: str = DEFAULT_DATABASE
    reset_db: bool = False
    embedded_postgres: bool = False  # skip DATABASE_URL and the local server
    state_dir: Path = DEFAULT_STATE_DIR
    template: Path = ROOT / "template.yaml"
    announce: Callable[[str], None] = print


def start_pool_worker(log_dir: Path, database_url: str) -> subprocess.Popen[bytes]:
    """One `python -m runner --pool` (AEF_POOL_SLOTS executions at once, a warm Chromium),
    with the stack's environment, logged in as the runners' login. No drain grace: stopping
    the stack hands its executions back, and the next `aef dev` resumes them from their last
    completed step."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, AEF_POOL_DRAIN_SECONDS="0", DATABASE_URL=database_url)
    with (log_dir / "pool-worker.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "runner", "--pool"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=ROOT)


def stop_pool_worker(proc: subprocess.Popen[bytes], grace_seconds: float = 15.0) -> None:
    """SIGTERM (its executions unwind and are handed back), SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class DevStack:
    """Starts every part, serves the app in the foreground, and stops what it started."""

    def __init__(self, options: DevOptions) -> None:
        self.options = options
        self.state = StateDir(options.state_dir.resolve())
        self.postgres: PostgresServer | None = None
        self.s3: S3Server | None = None
        self.gateway: Any = None
        self.launcher: LocalLauncher | None = None
        self.pool_worker: subprocess.Popen[bytes] | None = None
        self.database: Any = None
        self.info: StackInfo | None = None
        self.auth: Any = None
        self.app: StackApp | None = None
        self._socket: socket.socket | None = None

    # -- start --------------------------------------------------------------------------
    def prepare(self) -> StackApp:
        """Everything but serving: database, users, keys, S3, configuration, the app."""
        opts = self.options
        say = opts.announce
        self.state.ensure()
        previous = StackInfo.load(self.state.stack_file)
        if previous and previous.pid != os.getpid() and pid_alive(previous.pid):
            raise StackError(f"aef dev is already running (pid {previous.pid}) at "
                             f"{previous.supabase_url}")
        if not opts.template.exists():
            raise StackError(f"{opts.template} is missing: the gateway reads its routes there")
        self._socket = self._bind(opts.host, opts.port)
        port = self._socket.getsockname()[1]
        public_host = "127.0.0.1" if opts.host in ("0.0.0.0", "", "::") else opts.host  # noqa: S104
        supabase_url = f"http://{public_host}:{port}"

        self.postgres = resolve_postgres(opts.database_url, self.state,
                                         embedded_only=opts.embedded_postgres,
                                         url_name=opts.database_url_name)
        say(f"PostgreSQL      {redact_url(self.postgres.admin_url)} ({self.postgres.source})")
        report = prepare_database(self.postgres.admin_url, opts.database_name,
                                  reset=opts.reset_db)
        say(f"Database        {report.name} "
            f"({'created' if report.created else 'exists'}; shim applied; "
            f"migrations applied: {', '.join(report.applied) or 'none new'}"
            + (f"; re-applied: {', '.join(report.reapplied)}" if report.reapplied else "")
            + ")")
        say(f"Tables          {', '.join(report.tables)}")
        users = ensure_dev_users(report.url)
        functions_url, runner_url = production_logins(report.url)
        say(f"Logins          functions: {psycopg.conninfo.conninfo_to_dict(functions_url)['user']}"
            f", runners: {psycopg.conninfo.conninfo_to_dict(runner_url)['user']}")

        from aef.settings import Settings

        mine = Settings()  # what the person set (AEF_* variables) before the stack's own
        key = load_or_create(self.state.keys)
        if opts.reset_db:
            s3.clear(self.state.s3)
        self.s3 = S3Server(self.state.s3)
        s3_url = self.s3.start()
        export_environment({
            "DATABASE_URL": functions_url,
            "AEF_SUPABASE_URL": supabase_url,
            "AEF_JWKS_URL": None,
            "AEF_JWT_SECRET": None,
            "AEF_JWT_ISSUER": issuer_for(supabase_url),
            "AEF_JWT_AUDIENCE": "authenticated",
            "AEF_LAUNCHER": "local",
            "AEF_S3_ENDPOINT_URL": s3_url,
            "AEF_ALLOW_LOOPBACK": "true",
            "AEF_CHROMIUM_PATH": mine.chromium_path or chromium_path(),
            "AEF_WORK_DIR": str(self.state.runner_work),
            "AEF_CORS_ORIGINS": json.dumps(mine.cors_origins or LOCAL_CORS_ORIGINS),
            **LOCAL_AWS_CREDENTIALS,
        })
        from aef.db import Database, set_database
        from aef.launcher import LocalLauncher, set_launcher
        from aef.settings import get_settings

        settings = get_settings()
        export_environment({"AWS_DEFAULT_REGION": settings.aws_region,
                            "AWS_REGION": settings.aws_region})
        self.s3.create_bucket(settings.screenshot_bucket, settings.aws_region)
        self.database = Database(settings.database_url, min_size=1, max_size=10)
        set_database(self.database)
        self.launcher = LocalLauncher(settings, log_dir=self.state.logs, database_url=runner_url)
        if settings.dev_runner == "pool":  # AEF_DEV_RUNNER=process: a subprocess per execution
            from aef.launcher import PoolLauncher

            self.pool_worker = start_pool_worker(self.state.logs, runner_url)
            set_launcher(PoolLauncher(self.launcher))
        else:
            set_launcher(self.launcher)

        from local.demo import create_demo_app
        from local.gateway import Gateway, load_template
        from local.realtime import RealtimeServer

        template = load_template(opts.template)
        self.gateway = Gateway.for_template(template, cors_origins=settings.cors_origins)
        self.gateway.load_all()
        sweeper = self._sweeper(template)
        self.info = StackInfo(
            pid=os.getpid(), supabase_url=supabase_url, database_url=report.url,
            database_name=report.name, postgres=self.postgres.source,
            s3_endpoint_url=s3_url, screenshot_bucket=settings.screenshot_bucket,
            screenshot_prefix=settings.screenshot_prefix,
            anon_key=mint_anon_key(key, supabase_url=supabase_url), users=users,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            log_dir=str(self.state.logs))
        from local.auth import DEV_PASSWORD, DevAuth
        from local.console import create_console_app

        self.auth = DevAuth(key, supabase_url, users,
                            password=os.environ.get("AEF_DEV_PASSWORD") or DEV_PASSWORD)
        self.app = StackApp(
            gateway=self.gateway, realtime=RealtimeServer(settings, database_url=report.url),
            demo=create_demo_app(), key=key, auth=self.auth,
            console=create_console_app(supabase_url, self.info.anon_key),
            jwks_url=settings.effective_jwks_url,
            jwks_ttl=min(JWKS_REFRESH_SECONDS, settings.jwks_cache_seconds / 2),
            sweeper=sweeper, on_ready=self._ready)
        return self.app

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:
            sock.close()
            raise StackError(f"Cannot listen on {host}: {exc.strerror}; pass --host with an "
                             "address of this machine (default 127.0.0.1)") from None
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise StackError(f"{host}:{port} is in use; stop what listens there or pass "
                                 "--port") from None
            raise StackError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.listen(512)
        return sock

    def _sweeper(self, template: dict[str, Any]) -> Callable[[], Any]:
        """The template's scheduled function (the sweeper), called as EventBridge would."""
        import importlib

        from local.gateway import LambdaContext, scheduled_functions

        found = scheduled_functions(template)
        if not found:
            from functions.sweeper import app as sweeper_module

            found = [("SweeperFunction", sweeper_module.__name__, "handler")]
        logical_id, module, attribute = found[0]
        handler = getattr(importlib.import_module(module), attribute)

        def run() -> Any:
            return handler(scheduled_event(logical_id),
                           LambdaContext(function_name=logical_id, timeout_seconds=60))

        return run

    def _ready(self) -> None:
        assert self.info is not None
        self.info.save(self.state.stack_file)
        info, say = self.info, self.options.announce
        say(f"S3 (moto)       {info.s3_endpoint_url}  bucket {info.screenshot_bucket}, stored in "
            f"{self.state.s3} ({self.s3.restored if self.s3 else 0} writes restored)")
        say(f"API             {info.api_url}/api/aef/...  "
            f"({len(self.gateway.routes)} routes from {self.options.template.name})")
        for spec in self.gateway.routes:
            say(f"                  {spec.route_key:<44} -> {spec.function}")
        if self.gateway.cors is not None:
            say(f"CORS origins    {', '.join(self.gateway.cors.allow_origins)}"
                "  (AEF_CORS_ORIGINS: comma-separated or a JSON list)")
        say(f"JWKS            {info.supabase_url}{JWKS_PATH}")
        say(f"Realtime        {info.realtime_url}")
        say(f"Demo site       {info.supabase_url}/mail/  {info.supabase_url}/crm/")
        say(f"Runner logs     {info.log_dir}"
            + ("  (one pool worker: pool-worker.log; AEF_DEV_RUNNER=process for one "
               "process per execution)" if self.pool_worker is not None else ""))
        for email, user_id in info.users.items():
            say(f"Dev user        {email}  id {user_id}   token: aef token --user {email}")
        if self.auth is not None:
            say(f"Dev password    {self.auth.password}  (sign-in: {info.supabase_url}/auth/v1/"
                "token?grant_type=password; AEF_DEV_PASSWORD sets it)")
        say(f"Console         {info.console_url}  (sign in as a dev user)")
        say(f"Anon key        {info.anon_key}")
        say("Ready. Ctrl-C stops the stack.")

    # -- serve --------------------------------------------------------------------------
    def serve(self) -> None:
        """Serve until interrupted (SIGINT/SIGTERM), then stop everything started."""
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal through
        # the handler that was installed before it: make that one end `run` normally, so the
        # cleanup (runners, S3, embedded PostgreSQL, stack.json) always happens, also when
        # the signal comes while the stack is still starting.
        previous = {sig: signal.signal(sig, _stop_serving)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            app = self.app or self.prepare()
            assert self._socket is not None
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                    ws="websockets-sansio", timeout_graceful_shutdown=5)
            _Server(config, app).run(sockets=[self._socket])
        except _StopServing:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    def close(self) -> None:
        """Stop what this stack started; safe to call twice."""
        if self.pool_worker is not None:
            stop_pool_worker(self.pool_worker)
            self.pool_worker = None
        if self.launcher is not None:
            stopped = self.launcher.stop_all(RUNNER_STOP_GRACE_SECONDS)
            if stopped:
                self.options.announce(f"Stopped {stopped} runner(s) still running")
            self.launcher = None
        if self.gateway is not None:
            self.gateway.close()
            self.gateway = None
        if self.database is not None:
            from aef.db import set_database

            set_database(None)
            self.database.close()
            self.database = None
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        info = StackInfo.load(self.state.stack_file)
        if info is not None and info.pid == os.getpid():
            self.state.stack_file.unlink(missing_ok=True)
