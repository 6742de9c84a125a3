"""The time the current invocation has left (a Lambda's timeout), for work that retries.

The HTTP layer records the deadline from the Lambda context Mangum puts in the ASGI scope;
a retrying call (the ECS launch) asks `seconds_left()` so it gives up while there is still
time to write down the outcome, instead of being cut off by the Lambda timeout after commit.
Outside Lambda there is no deadline and callers use their own budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_deadline: ContextVar[float | None] = ContextVar("aef_deadline", default=None)


def lambda_deadline(context: Any) -> float | None:
    """The monotonic time at which the Lambda `context` times out (None without one)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        millis = float(remaining())
    except (TypeError, ValueError):
        return None
    return time.monotonic() + millis / 1000.0


@contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Run the block under the monotonic deadline `at` (None: no deadline)."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def seconds_left(default: float) -> float:
    """Seconds until the current deadline, or `default` when there is none."""
    at = _deadline.get()
    if at is None:
        return default
    return at - time.monotonic()
