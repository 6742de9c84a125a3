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

Beside it: PostgreSQL (`local.postgres`: DATABASE_URL, else the local server on
127.0.0.1:5432, else an embedded server started from Debian's /usr/lib/postgresql/*/bin into
`.aef/pgdata`: the same binaries bootstrap.sh installs, so it works offline with no extra
download), S3 as moto's server with the screenshot bucket, its writes journaled in `.aef/s3/`
and replayed at the next start (`local.s3`), one pool worker (`python -m runner --pool`) or a
subprocess per execution (`AEF_DEV_RUNNER=process`), and the sweeper every 15 s
(`local.stack_app`). Everything the stack creates lives in the git-ignored state folder `.aef/`
(keys, logs, pgdata, s3, stack.json, screenshots).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import uvicorn

from local import s3
from local.keys import JWKS_PATH, issuer_for, load_or_create, mint_anon_key
from local.postgres import (
    PostgresServer,
    ensure_dev_users,
    prepare_database,
    production_logins,
    redact_url,
    resolve_postgres,
)
from local.s3 import LOCAL_AWS_CREDENTIALS, S3Server
from local.stack_app import StackApp, StackServer, StopServing, scheduled_event, stop_serving
from local.state import StackError, StackInfo, StateDir, pid_alive

if TYPE_CHECKING:
    from aef.launcher import LocalLauncher

log = logging.getLogger("aef.dev")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / ".aef"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 54321
DEFAULT_DATABASE = "aef_dev"
RUNNER_STOP_GRACE_SECONDS = 0.5  # on shutdown, runners get this long to write their end
# a page served from any local port (Vite, the console, a static server); AEF_CORS_ORIGINS wins
LOCAL_CORS_ORIGINS = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
JWKS_REFRESH_SECONDS = 60.0



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
        previous = {sig: signal.signal(sig, stop_serving)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            app = self.app or self.prepare()
            assert self._socket is not None
            # no permessage-deflate: Supabase Realtime (Phoenix) does not compress frames
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                    ws="websockets-sansio", ws_per_message_deflate=False,
                                    timeout_graceful_shutdown=5)
            StackServer(config, app).run(sockets=[self._socket])
        except StopServing:
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
