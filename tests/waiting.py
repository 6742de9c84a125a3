"""Waiting in tests for something another thread, process or task does: one place, so every
wait has a deadline and fails with what it was waiting for (never a bare sleep loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], *, within: float = 20.0, interval: float = 0.05,
               what: str = "condition") -> T:
    """Call `probe` until it returns something truthy and return that; fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(interval)


async def eventually(probe: Callable[[], T | None], *, within: float = 20.0,
                     interval: float = 0.05, what: str = "condition",
                     in_thread: bool = True) -> T:
    """`wait_until` for async tests. The probe runs in a thread (a database query must not
    block the loop) unless `in_thread=False` (a cheap look at state the loop owns)."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(probe) if in_thread else probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Until `condition()` holds: state a callback or the loop itself changes."""
    await eventually(condition, within=within, interval=0.01, in_thread=False)
