"""The runner's process log: one JSON object per line (CloudWatch / docker logs).

Each line names the execution it is about. A single runner has one; a pool worker runs
several in one event loop, so the id comes from a context variable that each execution's task
sets (asyncio tasks and `asyncio.to_thread` carry it along); the worker's own lines have none.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

current_execution: ContextVar[str | None] = ContextVar("aef_execution_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # the engine names its execution on each line (a callback may run in another task)
        execution_id = getattr(record, "execution_id", None) or current_execution.get()
        if execution_id:
            entry["executionId"] = execution_id
        step_id = getattr(record, "step_id", None)
        if step_id:
            entry["stepId"] = step_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def configure_logging(execution_id: str | None = None) -> None:
    """JSON lines on stderr; `execution_id` for a single runner (the whole process is it)."""
    if execution_id:
        current_execution.set(execution_id)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
