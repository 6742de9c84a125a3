"""Riding out a brief database outage: retry reads and idempotent updates with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, TypeVar

from aef.errors import AefError

T = TypeVar("T")
log = logging.getLogger("aef.runner")

RETRYABLE_CODES: Final = frozenset({"database_unavailable", "database_busy"})
RETRY_FIRST_DELAY: Final = 0.2
RETRY_MAX_DELAY: Final = 2.0


async def retry_unavailable(call: Callable[[], T], budget_seconds: float) -> T:
    """Run the blocking `call` in a thread; while the database is unavailable or busy, try
    again (0.2 s doubling to 2 s) until `budget_seconds` are spent, then let the error out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_seconds
    delay = RETRY_FIRST_DELAY
    while True:
        try:
            return await asyncio.to_thread(call)
        except AefError as exc:
            left = deadline - loop.time()
            if exc.code not in RETRYABLE_CODES or left <= 0:
                raise
            log.warning("database call failed (%s); retrying in %.1f s", exc.code,
                        min(delay, left))
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, RETRY_MAX_DELAY)
