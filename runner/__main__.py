"""`python -m runner`: run one execution, then exit; `python -m runner --pool`: a worker that
runs up to AEF_POOL_SLOTS executions at once until SIGTERM (runner/pool.py).

The launcher passes AEF_EXECUTION_ID (+ the usual AEF_* settings) in the environment. The
local launcher adds AEF_RUNNER_TOKEN and DATABASE_URL; an ECS task gets neither: it reads its
database URL from Secrets Manager (AEF_DATABASE_URL_SECRET_ARN) and claims its token with its
task ARN (runner/identity.py). Nothing secret ever appears on a command line. Exit code: 0
completed or cancelled, 1 failed, 2 not claimed / lease lost / bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import psycopg
from psycopg.conninfo import make_conninfo
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import SettingsError

from aef.errors import ServiceUnavailable
from aef.settings import Settings, describe_invalid


class RunnerSettings(Settings):
    """The runner's own values on top of the shared settings (env prefix AEF_)."""

    execution_id: str = ""  # required unless --pool
    runner_token: SecretStr | None = None  # local launcher; on ECS it is claimed instead
    ecs_metadata_uri: str | None = Field(default=None,
                                         validation_alias="ECS_CONTAINER_METADATA_URI_V4")


def named_connections(settings: RunnerSettings) -> RunnerSettings:
    """Both database URLs carry an application_name naming this runner, so an operator (and
    the tests) can count its connections in pg_stat_activity."""
    execution = settings.execution_id[:36] or "pool"  # application_name keeps 63 characters
    listen = settings.db_listen_url or settings.database_url
    return settings.model_copy(update={
        "database_url": make_conninfo(settings.database_url,
                                      application_name=f"aef-runner:{execution}"),
        "db_listen_url": make_conninfo(listen,
                                       application_name=f"aef-runner-listen:{execution}"),
    })


def _configure_logging(execution_id: str | None) -> None:
    """The functions' JSON lines (aef.logs), with this execution's id on every line, so one
    CloudWatch Insights query reads functions, sweeper and runners alike. A pool worker binds
    none here: each execution's task sets its own (runner/pool.py)."""
    from aef.logs import bind_execution_id, configure_logging

    configure_logging()
    if execution_id:
        bind_execution_id(execution_id)


async def _pool(settings: RunnerSettings) -> int:
    from aef.db import Database
    from runner.pool import PoolWorker

    # each execution's lease, journal and poller share this pool with the worker's claims
    db = Database(settings.database_url, min_size=1,
                  max_size=max(2, settings.db_pool_max) + 2 * settings.pool_slots)
    worker = PoolWorker(settings, db)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.drain)
    try:
        return await worker.run()
    finally:
        db.close()


async def _main(settings: RunnerSettings) -> int:
    from aef.db import Database
    from runner.engine import Engine
    from runner.flow import exit_code
    from runner.identity import IdentityError, runner_token

    # Steps, the log flusher, the command poller and the heartbeat share this pool; their
    # transactions are short, so 2 connections carry them (AEF_DB_POOL_MIN/MAX, docs/deploy.md).
    db = Database(settings.database_url, min_size=settings.db_pool_min,
                  max_size=max(1, settings.db_pool_max))
    try:
        token = await asyncio.to_thread(
            runner_token, db, settings.execution_id,
            given=settings.runner_token.get_secret_value() if settings.runner_token else None,
            metadata_uri=settings.ecs_metadata_uri, wait_seconds=settings.claim_wait_seconds)
    except IdentityError as exc:
        logging.getLogger("aef.runner").error("not claimed: %s", exc)
        db.close()
        return 2
    engine = Engine(settings, db, settings.execution_id, token)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        # First SIGTERM/SIGINT (ECS stop_task, the local launcher): unwind after the current
        # action, close the browser, write the final state. A second one: cancel outright.
        nonlocal signals
        signals += 1
        if signals == 1:
            engine.terminate("The runner was terminated")
        elif task is not None:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        return exit_code(await engine.run())
    except asyncio.CancelledError:
        logging.getLogger("aef.runner").warning("terminated by a second signal")
        return 2
    except (ServiceUnavailable, psycopg.Error) as exc:
        # nothing could be claimed or recorded: say why in one line, not a traceback
        reason = await asyncio.to_thread(_database_problem, settings.database_url, exc)
        logging.getLogger("aef.runner").error(f"The database cannot be used: {reason}")
        return 2
    finally:
        db.close()


def _database_problem(url: str, exc: Exception) -> str:
    """What libpq says about `url` (the pool only reports that it timed out)."""
    if isinstance(exc, psycopg.Error):
        return _first_line(exc)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as probe:
        return _first_line(probe)
    return str(exc)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


USAGE = """Run one AEF execution in Chromium, then exit (what the launcher starts: an ECS
task in the cloud, a subprocess of `aef dev` locally). With --pool: a long-running worker
that claims executions dispatched to the pool and runs up to AEF_POOL_SLOTS at once, each in
its own Chromium (docs/scaling.md).

Everything comes from the environment, never the command line (the token is a secret):
  AEF_EXECUTION_ID     the execution to claim
  AEF_RUNNER_TOKEN     its runner token (local launcher; the API stores only its hash).
                       On ECS there is none: the runner claims one with its task ARN,
                       read from ECS_CONTAINER_METADATA_URI_V4
  DATABASE_URL         PostgreSQL, as the runner's login role (on ECS:
                       AEF_DATABASE_URL_SECRET_ARN, read from Secrets Manager)
  AEF_*                the shared settings (aef/settings.py), e.g. AEF_CHROMIUM_PATH,
                       AEF_S3_ENDPOINT_URL, AEF_SCREENSHOT_BUCKET, AEF_HEADLESS

Exit status: 0 completed or cancelled, 1 failed, 2 not claimed, lease lost or bad settings.
SIGTERM (or Ctrl-C) stops after the current action and records the end; a second one at once.
A pool worker on SIGTERM stops claiming, lets its executions finish for AEF_POOL_DRAIN_SECONDS,
then hands the rest back (the sweeper resumes them on a live worker); a second signal at once.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m runner", description=USAGE,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", action="store_true",
                        help="run as a pool worker (no AEF_EXECUTION_ID)")
    args = parser.parse_args(argv)
    from aef.secrets import SecretUnavailable, resolve_secrets

    try:
        settings = RunnerSettings()
    except (ValidationError, SettingsError) as exc:
        print(f"runner: {describe_invalid(exc, RunnerSettings)} "
              "(see python -m runner --help)", file=sys.stderr)
        return 2
    if not args.pool and not settings.execution_id:
        print("runner: AEF_EXECUTION_ID is not set (see python -m runner --help)",
              file=sys.stderr)
        return 2
    try:
        psycopg.conninfo.conninfo_to_dict(settings.database_url)
    except psycopg.Error as exc:
        print(f"runner: DATABASE_URL is not a PostgreSQL connection URL ({_first_line(exc)})",
              file=sys.stderr)
        return 2
    _configure_logging(None if args.pool else settings.execution_id)
    try:
        settings = named_connections(resolve_secrets(settings))
    except SecretUnavailable as exc:
        logging.getLogger("aef.runner").error("%s", exc)
        return 2
    return asyncio.run(_pool(settings) if args.pool else _main(settings))


if __name__ == "__main__":
    sys.exit(main())
