"""Manual takeover: a person drives the runner's browser through input commands.

The browser stays open; the runner applies each `input` command (click at a point, type text,
press a key, navigate) and publishes a fresh screenshot about every second so the person sees
what they are doing. Navigation still goes through the network guard: a person cannot use the
runner to reach what the automation may not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from playwright.async_api import Page

from runner.errors import RunnerError
from runner.keyboard import type_keys
from runner.navigation import goto
from runner.safety import NetworkGuard

log = logging.getLogger("aef.runner.takeover")

MAX_TEXT = 10_000
NAVIGATION_TIMEOUT_MS = 30_000


class InputRefused(RunnerError):
    """An input command that cannot be applied (bad payload, blocked URL)."""

    code, title = "input_refused", "The input cannot be applied"


def _number(payload: Mapping[str, Any], name: str) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputRefused(f"{name} must be a number")
    if not 0 <= float(value) <= 10_000:
        raise InputRefused(f"{name} is out of range")
    return float(value)


def _text(payload: Mapping[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InputRefused(f"{name} must be a non-empty string of at most {limit} characters")
    return value


class Takeover:
    """One takeover session: apply inputs; a ticker publishes screenshots meanwhile."""

    def __init__(self, page: Page, guard: NetworkGuard,
                 publish: Callable[[], Awaitable[None]], *, interval: float = 1.0) -> None:
        self.page = page
        self.guard = guard
        self._publish = publish
        self.interval = interval
        self._ticker: asyncio.Task[None] | None = None
        self.inputs = 0

    async def __aenter__(self) -> Takeover:
        self._ticker = asyncio.create_task(self._tick(), name="aef-takeover-screens")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ticker
            self._ticker = None

    async def _tick(self) -> None:
        while True:
            try:
                await self._publish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost frame is not worth ending the session for
                log.warning("takeover screenshot failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def apply(self, payload: Mapping[str, Any]) -> str:
        """Apply one input; returns a short description (never the typed text)."""
        kind = payload.get("kind")
        if kind == "click_at":
            x, y = _number(payload, "x"), _number(payload, "y")
            await self.page.mouse.click(x, y)
            described = f"clicked at ({x:.0f}, {y:.0f})"
        elif kind == "type":
            text = _text(payload, "text")
            await type_keys(self.page.keyboard, text)
            described = f"typed {len(text)} characters"
        elif kind == "press":
            key = _text(payload, "key", 50)
            await self.page.keyboard.press(key)
            described = f"pressed {key}"
        elif kind == "navigate":
            url = _text(payload, "url", 2048)
            verdict = await self.guard.check(url)
            if not verdict.allowed:
                raise InputRefused(f"Navigation blocked: {verdict.reason}")
            await goto(self.page, url, timeout_ms=NAVIGATION_TIMEOUT_MS)
            described = f"navigated to {url}"
        else:
            raise InputRefused(f"unknown input kind: {kind!r}")
        self.inputs += 1
        return described
