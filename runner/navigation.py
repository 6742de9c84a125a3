"""``page.goto`` that leaves the page ready for the next navigation (the `navigate` and
`download` actions, a takeover's navigation)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from runner.errors import first_line

log = logging.getLogger("runner.actions")  # the logger these lines have always used

ERROR_PAGE = "chrome-error://"


ERROR_PAGE_WAIT_S = 3.0


def _leaves_error_page(exc: PlaywrightError) -> bool:
    """A network failure commits an error page; an aborted navigation (a download, a 204)
    does not."""
    message = first_line(exc)
    return "net::ERR_" in message and "net::ERR_ABORTED" not in message


def _interrupted_by_error_page(exc: PlaywrightError) -> bool:
    """True when a navigation lost to the late error page of an earlier failed one."""
    return f'another navigation to "{ERROR_PAGE}' in first_line(exc)


async def goto(page: Page, url: str, *, timeout_ms: float, wait_until: str = "load") -> Any:
    """``page.goto`` that leaves the page ready for the next navigation.

    Chromium leaves one race open: a failed navigation's error page commits 50-200 ms after
    the failure is reported (longer on a busy machine). Here a failure waits until its own
    error page has committed and loaded (the page may already have shown an older one, so the
    URL alone proves nothing).
    """
    error_page = asyncio.Event()

    def on_navigated(frame: Frame) -> None:
        if frame == page.main_frame and frame.url.startswith(ERROR_PAGE):
            error_page.set()

    page.on("framenavigated", on_navigated)
    try:
        return await _goto_past_a_late_error_page(page, url, timeout_ms, wait_until, error_page)
    except PlaywrightError as exc:
        if not isinstance(exc, PlaywrightTimeoutError) and _leaves_error_page(exc):
            with contextlib.suppress(TimeoutError, PlaywrightError):
                await asyncio.wait_for(error_page.wait(), ERROR_PAGE_WAIT_S)
                await page.wait_for_load_state("load", timeout=ERROR_PAGE_WAIT_S * 1000)
        raise
    finally:
        page.remove_listener("framenavigated", on_navigated)


async def _goto_past_a_late_error_page(
    page: Page, url: str, timeout_ms: float, wait_until: str, error_page: asyncio.Event
) -> Any:
    """A navigation that lost to an earlier failure's late error page is still on its way in
    Chromium: let it land, then start it again so the caller gets its response."""
    try:
        return await page.goto(url, timeout=timeout_ms, wait_until=wait_until)  # type: ignore[arg-type]
    except PlaywrightError as exc:
        if isinstance(exc, PlaywrightTimeoutError) or not _interrupted_by_error_page(exc):
            raise
    log.info("navigation to %s lost to a late error page; starting it again", url)
    with contextlib.suppress(PlaywrightError):
        await page.wait_for_url(lambda now: not now.startswith(ERROR_PAGE),
                                timeout=min(timeout_ms, ERROR_PAGE_WAIT_S * 1000))
    error_page.clear()  # that error page was the earlier failure's, not ours
    return await page.goto(url, timeout=timeout_ms, wait_until=wait_until)  # type: ignore[arg-type]
