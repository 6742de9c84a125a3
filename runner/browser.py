"""One browser per execution: launch Debian's Chromium, guard its network, always tear it down.

Usage::

    async with open_browser(settings, work_dir=task_dir, on_block=log_block) as session:
        await session.page.goto(...)
        jpeg = await capture_jpeg(session.page, secrets=secrets.values())

Whatever happens inside the block (exception, cancellation), the contexts, their egress
proxies, the browser and the Playwright driver are closed, each with a deadline; if the browser
process is still there afterwards it is killed with its children. ``session.pid`` is the browser
process id so tests (and the engine's own health checks) can verify it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    async_playwright,
)

from aef.settings import Settings
from runner.safety import NetworkGuard, OnBlock, Resolver, system_resolve

log = logging.getLogger("runner.browser")

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    # WebRTC would otherwise send UDP around the egress proxy.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
)
VIEWPORT = {"width": 1280, "height": 800}
CLOSE_TIMEOUT_SECONDS = 10.0


@dataclass
class GuardedContext:
    """A browser context whose every request passes the network guard, with its first page."""

    context: BrowserContext
    page: Page
    guard: NetworkGuard

    async def close(self, grace_seconds: float | None = None) -> None:
        """Close the context, then its egress proxy; never raises."""
        grace_seconds = CLOSE_TIMEOUT_SECONDS if grace_seconds is None else grace_seconds
        await _bounded(self.context.close(), grace_seconds, "closing a context")
        await _bounded(self.guard.close(), grace_seconds, "stopping a proxy")


@dataclass
class BrowserSession:
    """What ``open_browser`` yields: the browser, its main guarded context and page."""

    settings: Settings
    browser: Browser
    pid: int | None
    work_dir: Path
    downloads_dir: Path
    main: GuardedContext
    contexts: list[GuardedContext] = field(default_factory=list)

    @property
    def context(self) -> BrowserContext:
        return self.main.context

    @property
    def page(self) -> Page:
        return self.main.page

    @property
    def guard(self) -> NetworkGuard:
        return self.main.guard

    resolver: Resolver = system_resolve

    async def new_context(
        self,
        *,
        settings: Settings | None = None,
        on_block: OnBlock | None = None,
        resolver: Resolver | None = None,
    ) -> GuardedContext:
        """Another guarded context (own proxy, own policy); closed with the session."""
        guarded = await create_context(
            self.browser,
            settings or self.settings,
            on_block=on_block,
            resolver=resolver or self.resolver,
        )
        self.contexts.append(guarded)
        return guarded


async def create_context(
    browser: Browser,
    settings: Settings,
    *,
    on_block: OnBlock | None = None,
    resolver: Resolver = system_resolve,
) -> GuardedContext:
    """A context with downloads on, a 1280x800 viewport, service workers blocked (their
    requests would not be routed) and the network guard installed on both layers."""
    guard = NetworkGuard(settings, on_block, resolver=resolver)
    await guard.start()
    try:
        context = await browser.new_context(
            accept_downloads=True,
            viewport=VIEWPORT,  # type: ignore[arg-type]
            service_workers="block",
            proxy=guard.proxy_settings,  # type: ignore[arg-type]
        )
    except BaseException:
        await guard.close()
        raise
    try:
        await guard.install(context)
        page = await context.new_page()
    except BaseException:
        await GuardedContext(context, None, guard).close()  # type: ignore[arg-type]
        raise
    return GuardedContext(context, page, guard)


class BlockRelay:
    """The on_block of a context made before its execution is known: it forwards to the
    execution's own callback, set at hand-over (nothing can be blocked before: the context
    has not loaded anything)."""

    def __init__(self) -> None:
        self.target: OnBlock | None = None

    def __call__(self, url: str, reason: str) -> None:
        if self.target is not None:
            self.target(url, reason)


@dataclass
class LaunchedBrowser:
    """A Chromium launched (with its own Playwright driver) for an execution not known yet:
    what a pool worker keeps warm. With ``main``, its guarded context and page are made too
    (fresh: no page loaded, no cookie, no storage), so the hand-over costs nothing; the
    context's guard reports blocks through ``relay``. ``close`` tears it all down."""

    playwright: Playwright
    browser: Browser
    pid: int | None
    marker: str
    main: GuardedContext | None = None
    relay: BlockRelay = field(default_factory=BlockRelay)
    scratch: Path | None = None  # its own folder (Chromium's download staging), removed with it

    async def close(self) -> None:
        pid = self.pid or find_browser_pid(self.marker)
        await _shutdown(self.playwright, self.browser, [self.main] if self.main else [], pid)
        self.forget_scratch()

    def forget_scratch(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


async def launch_chromium(settings: Settings, work_dir: str | Path, *,
                          with_context: bool = False) -> LaunchedBrowser:
    """Start Playwright and Chromium (and its guarded context); on failure nothing is left."""
    work, _ = prepare_work_dir(work_dir)
    marker = f"--aef-browser-session={uuid.uuid4().hex}"  # Chromium ignores unknown switches
    playwright: Playwright | None = None
    browser: Browser | None = None
    try:
        playwright = await async_playwright().start()
        browser = await playwright.chromium.launch(
            executable_path=settings.chromium_path or DEFAULT_CHROMIUM,
            headless=settings.headless,
            args=[*CHROMIUM_ARGS, marker],
            downloads_path=str(work / ".browser-downloads"),
            timeout=60_000,
        )
        launched = LaunchedBrowser(playwright, browser, find_browser_pid(marker), marker)
        if with_context:  # a warm launch: its folder is its own
            launched.scratch = work
            launched.main = await create_context(browser, settings, on_block=launched.relay)
        return launched
    except BaseException:
        closing = asyncio.ensure_future(_shutdown(playwright, browser, [],
                                                  find_browser_pid(marker)))
        with contextlib.suppress(BaseException):
            await asyncio.shield(closing)
        raise


@asynccontextmanager
async def open_browser(
    settings: Settings,
    *,
    work_dir: str | Path | None = None,
    on_block: OnBlock | None = None,
    resolver: Resolver = system_resolve,
    launched: LaunchedBrowser | None = None,
) -> AsyncIterator[BrowserSession]:
    """Launch Chromium for one task (or take over ``launched``, a warm one nobody has used);
    downloads land in ``<work_dir>/downloads``.

    ``work_dir`` defaults to ``settings.work_dir``; the engine should pass a folder of its own
    per execution. ``resolver`` is the guard's DNS lookup (tests pass one that never leaves
    the machine). The context (network guard, cookies, storage) is this caller's only: made
    here, or made with ``launched`` and never used before.
    """
    work, downloads = prepare_work_dir(work_dir or settings.work_dir)
    session: BrowserSession | None = None
    if launched is None:
        launched = await launch_chromium(settings, work)
    playwright, browser, marker = launched.playwright, launched.browser, launched.marker
    pid = launched.pid
    try:
        if launched.main is not None and resolver is system_resolve:
            launched.relay.target = on_block
            main = launched.main
        else:
            if launched.main is not None:  # made for another resolver: not this one's
                await launched.main.close()
            main = await create_context(browser, settings, on_block=on_block,
                                        resolver=resolver)
        session = BrowserSession(settings, browser, pid, work, downloads, main, [main], resolver)
        yield session
    finally:
        pid = pid or find_browser_pid(marker)
        contexts = session.contexts if session else [launched.main] if launched.main else []
        closing = asyncio.ensure_future(_shutdown(playwright, browser, contexts, pid))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            # Cancelled again while closing: do not leave a browser behind.
            if pid is not None and process_alive(pid):
                kill_process_tree(pid)
            raise
        finally:
            launched.forget_scratch()


def prepare_work_dir(work_dir: str | Path) -> tuple[Path, Path]:
    """(absolute work dir, its downloads folder), both created."""
    work = Path(work_dir).resolve()
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    return work, downloads


async def _bounded(coro: Any, seconds: float, what: str) -> None:
    """Await ``coro`` for at most ``seconds``; on overrun cancel it and move on without waiting
    (Playwright calls can take far longer to unwind than the deadline)."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        exc = task.exception()
        if exc is not None:
            log.warning("%s failed: %s", what, exc)
        return
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    log.warning("%s did not finish within %.0f s", what, seconds)


async def _shutdown(
    playwright: Playwright | None,
    browser: Browser | None,
    contexts: list[GuardedContext],
    pid: int | None,
) -> None:
    """Close everything with deadlines, then make sure the process tree is gone."""
    for guarded in reversed(contexts):
        await guarded.close(CLOSE_TIMEOUT_SECONDS)
    if browser is not None:
        await _bounded(browser.close(), CLOSE_TIMEOUT_SECONDS, "closing the browser")
    if pid is not None and process_alive(pid):
        kill_process_tree(pid)
    if playwright is not None:
        await _bounded(playwright.stop(), CLOSE_TIMEOUT_SECONDS, "stopping Playwright")
    if pid is not None:
        for _ in range(50):
            if not process_alive(pid):
                break
            await asyncio.sleep(0.1)
        else:
            log.error("browser process %s is still alive after kill", pid)


# --------------------------------------------------------------------------- processes


def _read_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) from /proc, None if the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    stat = _read_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def find_browser_pid(marker: str) -> int | None:
    """The Chromium browser process launched with ``marker`` on its command line (its
    children do not inherit unknown switches; the topmost match is the browser)."""
    needle = marker.encode()
    matches: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if needle in argv:
            stat = _read_stat(int(name))
            if stat is not None:
                matches[int(name)] = stat[1]
    for pid, parent in matches.items():
        if parent not in matches:
            return pid
    return None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _read_stat(int(name))
            if stat is not None and stat[1] == pid:
                found.append(int(name))
    return found


def kill_process_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (browser, zygotes, renderers)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    for target in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)
    log.warning("killed browser process tree %s", tree)


# --------------------------------------------------------------------------- screenshots

_VALUE_FIELDS = "input:not([type=hidden]), textarea"


async def capture_jpeg(
    page: Page,
    *,
    mask_passwords: bool = True,
    quality: int = 60,
    secrets: Iterable[str] = (),
    timeout_ms: float = 10_000,
) -> bytes | None:
    """A JPEG of the viewport with password fields and anything showing a secret masked.

    Returns None instead of raising: a missing screenshot must never fail a step.
    Secret values are compared in Python, never sent into the page.

    Playwright's mask pass costs about 25 ms per shot (an overlay drawn in every frame and
    removed after the capture), so the password locator is only handed to it when it matches
    something: a count costs one round trip.
    """
    try:
        masks: list[Locator] = []
        if mask_passwords:
            passwords = page.locator("input[type=password]")
            if await passwords.count():
                masks.append(passwords)
        secret_list = [s for s in secrets if s]
        if secret_list:
            fields = page.locator(_VALUE_FIELDS)
            values: list[Any] = await fields.evaluate_all(
                "els => els.map(e => String(e.value ?? ''))"
            )
            for index, value in enumerate(values):
                if any(secret in value for secret in secret_list):
                    masks.append(fields.nth(index))
            for secret in secret_list:
                masks.append(page.get_by_text(secret))
        return await page.screenshot(
            type="jpeg", quality=quality, mask=masks, timeout=timeout_ms, animations="disabled"
        )
    except Exception as exc:
        log.warning("screenshot failed: %s", type(exc).__name__)
        return None
