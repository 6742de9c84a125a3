"""`python -m runner`: run one execution, then exit.

The launcher passes AEF_EXECUTION_ID (+ the usual AEF_* settings) in the environment. The
local launcher adds AEF_RUNNER_TOKEN and DATABASE_URL; an ECS task gets neither: it reads its
database URL from Secrets Manager (AEF_DATABASE_URL_SECRET_ARN) and claims its token with its
task ARN (runner/identity.py). Nothing secret ever appears on a command line. Exit code: 0
completed or cancelled, 1 failed, 2 not claimed / lease lost / bad configuration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from psycopg.conninfo import make_conninfo
from pydantic import Field, SecretStr, ValidationError

from aef.settings import Settings


class RunnerSettings(Settings):
    """The runner's own values on top of the shared settings (env prefix AEF_)."""

    execution_id: str
    runner_token: SecretStr | None = None  # local launcher; on ECS it is claimed instead
    ecs_metadata_uri: str | None = Field(default=None,
                                         validation_alias="ECS_CONTAINER_METADATA_URI_V4")


def named_connections(settings: RunnerSettings) -> RunnerSettings:
    """Both database URLs carry an application_name naming this runner, so an operator (and
    the tests) can count its connections in pg_stat_activity."""
    execution = settings.execution_id[:36]  # application_name keeps 63 characters
    listen = settings.db_listen_url or settings.database_url
    return settings.model_copy(update={
        "database_url": make_conninfo(settings.database_url,
                                      application_name=f"aef-runner:{execution}"),
        "db_listen_url": make_conninfo(listen,
                                       application_name=f"aef-runner-listen:{execution}"),
    })


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, with the execution id (CloudWatch / docker logs)."""

    def __init__(self, execution_id: str) -> None:
        super().__init__()
        self.execution_id = execution_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "executionId": self.execution_id,
        }
        step_id = getattr(record, "step_id", None)
        if step_id:
            entry["stepId"] = step_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def _configure_logging(execution_id: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(execution_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


async def _main(settings: RunnerSettings) -> int:
    from aef.db import Database
    from runner.engine import Engine, exit_code
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
    finally:
        db.close()


def main() -> int:
    from aef.secrets import SecretUnavailable, resolve_secrets

    try:
        settings = RunnerSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
        print(f"runner: missing or invalid settings: {missing}", file=sys.stderr)
        return 2
    _configure_logging(settings.execution_id)
    try:
        settings = named_connections(resolve_secrets(settings))
    except SecretUnavailable as exc:
        logging.getLogger("aef.runner").error("%s", exc)
        return 2
    return asyncio.run(_main(settings))


if __name__ == "__main__":
    sys.exit(main())
