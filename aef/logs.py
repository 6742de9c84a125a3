"""Structured JSON logs with the request / execution ids of the current context.

No FastAPI here: the sweeper and other non-HTTP entry points log the same way without paying
for the web framework's import.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# One mutable dict per request: a sync endpoint runs in a thread with a *copy* of the context,
# and mutating the shared dict (instead of setting a var) keeps what it binds visible to the
# access log written by the middleware.
log_context: ContextVar[dict[str, str] | None] = ContextVar("aef_log_context", default=None)


def current_request_id() -> str | None:
    ctx = log_context.get()
    return ctx.get("requestId") if ctx else None


def bind_log_context(**fields: object) -> None:
    """Attach fields (e.g. executionId=...) to every log line of the current request/task."""
    ctx = log_context.get()
    if ctx is None:
        ctx = {}
        log_context.set(ctx)
    for key, value in fields.items():
        if value is None:
            ctx.pop(key, None)
        else:
            ctx[key] = str(value)


def bind_execution_id(execution_id: object) -> None:
    bind_log_context(executionId=execution_id)


_RESERVED_RECORD_KEYS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_SENSITIVE = ("authorization", "password", "secret", "token", "cookie", "credential")
_NEVER_LOGGED = frozenset({"body", "headers", "json", "payload"})


def _redact(key: str, value: Any) -> Any:
    lowered = key.lower()
    if lowered in _NEVER_LOGGED or any(word in lowered for word in _SENSITIVE):
        return "[redacted]"
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request/execution ids of the current context."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = log_context.get()
        if ctx:
            data.update(ctx)
        for key, value in record.__dict__.items():
            if key not in _RESERVED_RECORD_KEYS and not key.startswith("_"):
                data[key] = _redact(key, value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever sys.stderr is *now* (Lambda, uvicorn and pytest capture all swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Make the root logger emit JSON lines; idempotent.

    In Lambda the runtime's own root handler (which adds the AWS request id) is kept and only
    re-formatted, so lines are not written twice; elsewhere one stderr handler is added.
    """
    root = logging.getLogger()
    formatter = JsonFormatter()
    lambda_handlers = [h for h in root.handlers if type(h).__name__.startswith("LambdaLogger")]
    for handler in lambda_handlers:
        handler.setFormatter(formatter)
    if not lambda_handlers and not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    logging.getLogger("mangum").setLevel(logging.WARNING)  # its access line duplicates ours


