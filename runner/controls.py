"""Acting on one located element as a person would: the hit test before a grounded act, a
click through the visible label of a hidden input, a checkbox or switch brought to a state,
an option picked in a native select or a custom (ARIA) combobox."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Locator, Page

from runner.errors import NeedsHuman, StepError
from runner.grounding import hit_test


async def poll(check: Callable[[], Awaitable[bool]], timeout_ms: float) -> bool:
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


_HAS_OPTION_JS = """(e, v) => e.tagName !== 'SELECT' || Array.from(e.options).some(
    (o) => o.value === v || o.label === v || o.text.trim() === v)"""


async def select_option(loc: Locator, value: str, wait_ms: float, shown: str) -> None:
    """Select by value or label. A dropdown that is there but never gets the option is a
    StepError (wrong data), not a timeout to retry."""
    await loc.wait_for(state="attached", timeout=wait_ms)

    async def has_option() -> bool:
        found: bool = await loc.evaluate(_HAS_OPTION_JS, value)
        return found

    if not await poll(has_option, wait_ms):
        raise StepError(f"no option {shown}", code="option_missing")
    await loc.select_option(value, timeout=wait_ms)


async def top_most(page: Page, loc: Locator, what: str,
                   wait_ms: float) -> dict[str, Any]:
    """The hit test before an act: the element (or the label of a visually hidden checkbox)
    must be the top-most thing at its click point; a modal or overlay in the way escalates."""
    await loc.wait_for(state="attached", timeout=wait_ms)
    deadline = time.monotonic() + min(wait_ms, 3000.0) / 1000
    while True:
        point = await hit_test(loc)
        if point["state"] == "ok" or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    if point["state"] != "ok":
        by = point.get("by") or "another element"
        raise NeedsHuman(f"{what} is not the top-most element at its click point "
                         f"({point['state']}, {by} is in the way)",
                         escalation={"reason": "hit test failed", "candidates": []})
    return point


async def click_at(page: Page, loc: Locator, point: dict[str, Any], wait_ms: float) -> None:
    if point.get("via") == "self":
        await loc.click(timeout=wait_ms)
    else:  # through the visible label / custom control of a hidden input
        await page.mouse.click(point["x"], point["y"])


async def set_checked(page: Page, loc: Locator, point: dict[str, Any], wanted: bool,
                       wait_ms: float, what: str) -> None:
    """check/uncheck that also works on switches and visually hidden inputs."""
    state = "(e) => e.tagName === 'INPUT' ? e.checked : (e.getAttribute('aria-checked') " \
            "=== 'true' || e.getAttribute('aria-pressed') === 'true')"
    if bool(await loc.evaluate(state)) == wanted:
        return
    await click_at(page, loc, point, wait_ms)
    if not await poll(lambda: _is(loc, state, wanted), min(wait_ms, 3000.0)):
        raise StepError(f"{what} did not become {'checked' if wanted else 'unchecked'}")


async def _is(loc: Locator, js: str, wanted: bool) -> bool:
    return bool(await loc.evaluate(js)) == wanted


async def pick_option(page: Page, loc: Locator, point: dict[str, Any], value: str,
                       wait_ms: float, shown: str) -> None:
    """A custom (ARIA) combobox/listbox: open it, then click the option with that name."""
    pattern = re.compile(rf"^\W*{re.escape(value.strip())}\W*$", re.I)
    options = page.get_by_role("option", name=pattern).filter(visible=True)
    if await options.count() != 1:  # closed: open it first
        await click_at(page, loc, point, wait_ms)
    found = await poll(lambda: _count_is_one(options), min(wait_ms, 3000.0))
    if not found:
        await page.keyboard.press("Escape")
        raise NeedsHuman(f"no single option {shown}",
                         escalation={"reason": "option not found", "candidates": []})
    await options.click(timeout=wait_ms)


async def _count_is_one(loc: Locator) -> bool:
    return await loc.count() == 1
