"""The runner's own errors: a stable code and a redactable detail, never an HTTP status.

The runner answers no HTTP request, so its errors do not derive from `aef.errors.AefError`
(whose status is for problem+json responses). The codes are stable: they appear in log
lines and tests (`element_not_found`, `needs_human`, `blocked`, ...). `extra` carries
structured details (an escalation's candidates, a guard block's category).
"""

from __future__ import annotations

from typing import Any


class RunnerError(Exception):
    """A failure inside the runner: `code` (stable), `title`, `detail` (the message)."""

    code: str
    title: str = "The runner failed"

    def __init__(self, detail: str | None = None, *, code: str | None = None,
                 **extra: Any) -> None:
        if code is None and not hasattr(self, "code"):
            raise TypeError(f"{type(self).__name__} needs a code")
        self.detail = detail or self.title
        super().__init__(self.detail)
        self.code = code or self.code
        self.extra = extra
