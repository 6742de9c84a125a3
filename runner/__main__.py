"""`python -m runner`: run one execution, then exit.

The launcher (ECS task or local subprocess) passes AEF_EXECUTION_ID, AEF_RUNNER_TOKEN and
DATABASE_URL (+ the usual AEF_* settings) in the environment; the token never appears on a
command line. Exit code: 0 completed or cancelled, 1 failed, 2 not claimed / lease lost /
bad configuration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr, ValidationError

from aef.settings import Settings


class RunnerSettings(Settings):
    """The runner's own two values on top of the shared settings (env prefix AEF_)."""

    execution_id: str
    runner_token: SecretStr


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

    # steps, the log flusher, the command poller and the heartbeat may each hold one
    db = Database(settings.database_url, min_size=1, max_size=6)
    engine = Engine(settings, db, settings.execution_id,
                    settings.runner_token.get_secret_value())
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
    try:
        settings = RunnerSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
        print(f"runner: missing or invalid settings: {missing}", file=sys.stderr)
        return 2
    _configure_logging(settings.execution_id)
    return asyncio.run(_main(settings))


if __name__ == "__main__":
    sys.exit(main())
