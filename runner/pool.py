"""`python -m runner --pool`: a long-running worker that runs up to N executions at once.

Why: a Fargate task per execution takes tens of seconds to start; a warm worker starts the
first step in about a second (bench/bench_start.py) and shares a task between executions.

What still holds per execution (each one runs the unchanged `Engine`):
- identity: the worker claims one dispatched execution at a time through
  `aef_private.claim_for_pool`, which returns that execution's id and a fresh runner token;
  every read and write is then made under that execution's identity (RLS), exactly like a
  single runner. The worker itself holds no right on any execution.
- lease and heartbeat, stop within a second, crash resume by the sweeper;
- its own Chromium process and Playwright driver (nothing shared: cookies, storage, downloads
  folder, network guard). One Chromium is launched ahead of the next claim and handed over;
  the context (guard, cookies) is created at hand-over, for that execution only;
- its secrets: the log filter that redacts them is removed when it ends.

SIGTERM (ECS scale-in, Spot interruption, `aef dev` stopping): stop claiming, let running
executions finish for `pool_drain_seconds`, then hand each remaining one back (it unwinds
after its current action, closes its browser and releases its lease; the sweeper resumes it
from its last completed step on a live worker). A second signal hands them back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg

from aef.db import Database
from aef.errors import AefError
from aef.logs import log_context
from aef.settings import Settings
from aef.store import runner as runner_store
from runner.browser import BrowserSession, LaunchedBrowser, launch_chromium, open_browser
from runner.control import listen_url
from runner.engine import Engine
from runner.lease import new_runner_id

log = logging.getLogger("aef.runner.pool")

POOL_CHANNEL = "aef_pool"  # dispatch_to_pool NOTIFYs it with an empty payload
POLL_SECONDS = 0.5  # the backstop when a NOTIFY is missed
WARM_DELAY_SECONDS = 1.0  # the next warm launch waits so it does not slow the hand-over
HAND_BACK_GRACE_SECONDS = 30.0
HAND_BACK_REASON = "The pool worker is shutting down"


class WarmBrowser:
    """One Chromium launched ahead of the next claim, in a folder of its own."""

    def __init__(self, settings: Settings, enabled: bool = True) -> None:
        self.settings = settings
        self.enabled = enabled
        self._task: asyncio.Task[LaunchedBrowser] | None = None
        self._later: asyncio.TimerHandle | None = None
        self._closed = False

    def prepare(self) -> None:
        if not self.enabled or self._closed or self._task is not None:
            return
        work = Path(self.settings.work_dir) / f"warm-{uuid.uuid4().hex[:12]}"
        # a context of its own: not that of the execution whose hand-over triggered it (the
        # guard's tasks inherit it, and their log lines must not name that execution)
        self._task = asyncio.create_task(
            launch_chromium(self.settings, work, with_context=True), name="aef-warm",
            context=contextvars.Context())

    def prepare_later(self, seconds: float = WARM_DELAY_SECONDS) -> None:
        if self._later is None:
            def fire() -> None:
                self._later = None
                self.prepare()
            self._later = asyncio.get_running_loop().call_later(
                seconds, fire, context=contextvars.Context())

    async def take(self) -> LaunchedBrowser | None:
        """The warm browser (None: none ready or it failed; the caller launches its own)."""
        task, self._task = self._task, None
        if task is None:
            return None
        try:
            launched = await task
        except Exception as exc:
            log.warning("the warm browser failed to start: %s", exc)
            return None
        finally:
            self.prepare_later()
        if not launched.browser.is_connected():
            await launched.close()
            return None
        return launched

    async def close(self) -> None:
        self._closed = True
        if self._later is not None:
            self._later.cancel()
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            launched = await task
            await launched.close()


class PoolWorker:
    """Claims dispatched executions while it has a free slot and runs each in an Engine."""

    def __init__(self, settings: Settings, db: Database, *, slots: int | None = None,
                 drain_seconds: float | None = None, worker_id: str | None = None,
                 warm: bool = True) -> None:
        self.settings = settings
        self.db = db
        self.slots = max(1, slots if slots is not None else settings.pool_slots)
        self.drain_seconds = (drain_seconds if drain_seconds is not None
                              else settings.pool_drain_seconds)
        self.worker_id = worker_id or f"pool:{new_runner_id()}"
        self.warm = WarmBrowser(settings, enabled=warm)
        self.engines: dict[str, Engine] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.draining = asyncio.Event()
        self._now = asyncio.Event()  # a second signal: hand back without waiting
        self._wake = asyncio.Event()
        self.claimed = 0
        self.on_claim: Callable[[str], None] | None = None  # tests and the bench observe claims

    # -- control ---------------------------------------------------------------------------
    def drain(self) -> None:
        """Stop claiming and wind down (SIGTERM). Called again: hand back at once."""
        if self.draining.is_set():
            self._now.set()
        self.draining.set()
        self._wake.set()

    # -- the database ----------------------------------------------------------------------
    def _heartbeat_sync(self, draining: bool) -> None:
        with self.db.as_runner("", "") as conn:
            runner_store.pool_heartbeat(conn, self.worker_id, self.slots, len(self.engines),
                                        draining)

    async def _beat(self) -> None:
        try:
            await asyncio.to_thread(self._heartbeat_sync, self.draining.is_set())
        except AefError as exc:  # the database is briefly away: the next beat tries again
            log.warning("pool heartbeat failed: %s", exc.detail)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            await self._beat()

    def _claim_sync(self) -> tuple[str, str] | None:
        with self.db.as_runner("", "") as conn:
            return runner_store.claim_for_pool(conn, self.worker_id)

    def _leave_sync(self) -> None:
        with self.db.as_runner("", "") as conn:
            runner_store.pool_leave(conn, self.worker_id)

    async def _listen(self) -> None:
        """Wake on `aef_pool` (the payload is never read: anyone may NOTIFY; the claim reads
        rows under the database's rules)."""
        url = listen_url(self.settings)
        if url is None:
            return
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
                async with conn:
                    await conn.execute(f"listen {POOL_CHANNEL}")
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poll covers us meanwhile
                log.warning("pool LISTEN connection lost: %s", exc)
                await asyncio.sleep(2.0)

    # -- executions ------------------------------------------------------------------------
    @asynccontextmanager
    async def _browser(self, work_dir: Path,
                       on_block: Callable[[str, str], None]) -> AsyncIterator[BrowserSession]:
        launched = await self.warm.take()
        async with open_browser(self.settings, work_dir=work_dir, on_block=on_block,
                                launched=launched) as session:
            yield session

    async def _run(self, execution_id: str, engine: Engine) -> None:
        # a dict of its own (bind_log_context mutates the one it finds, shared by every task
        # copied from the worker's context): this task's lines name this execution only
        log_context.set({"executionId": execution_id})
        try:
            outcome = await engine.run()
            log.info("execution ended: %s", outcome.status)
        except Exception:
            log.exception("execution crashed")
        finally:
            self.engines.pop(execution_id, None)
            self._wake.set()

    def _start(self, execution_id: str, token: str) -> None:
        self.claimed += 1
        # counted at once: the next heartbeat must not report the slot free
        try:
            engine = Engine(self.settings, self.db, execution_id, token, browser=self._browser)
        except Exception:  # it stays queued: the sweeper fails it ("no runner picked it up")
            log.exception("the engine could not be made for %s", execution_id)
            return
        self.engines[execution_id] = engine
        task = asyncio.create_task(self._run(execution_id, engine), name=f"aef-{execution_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.on_claim is not None:
            self.on_claim(execution_id)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def _claim_loop(self) -> None:
        while not self.draining.is_set():
            if len(self.engines) < self.slots:
                try:
                    claimed = await asyncio.to_thread(self._claim_sync)
                except AefError as exc:
                    log.warning("pool claim failed: %s", exc.detail)
                    claimed = None
                if claimed is not None:
                    self._start(*claimed)
                    continue
            await self._sleep(POLL_SECONDS)

    async def _drain(self) -> None:
        await self._beat()  # draining: no more dispatches to this worker
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        if self._tasks:
            log.info("draining: %d execution(s) running", len(self._tasks))
        now = asyncio.ensure_future(self._now.wait())
        try:
            while self._tasks and not self._now.is_set() and loop.time() < deadline:
                await asyncio.wait({*self._tasks, now}, timeout=deadline - loop.time(),
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            now.cancel()
        for engine in list(self.engines.values()):
            engine.hand_back(HAND_BACK_REASON)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=HAND_BACK_GRACE_SECONDS)

    async def run(self) -> int:
        """Serve until drained; 0 on a clean exit."""
        await self._beat()
        helpers = [asyncio.create_task(self._heartbeat_loop(), name="aef-pool-heartbeat"),
                   asyncio.create_task(self._listen(), name="aef-pool-listen")]
        self.warm.prepare()
        log.info("pool worker %s ready with %d slot(s)", self.worker_id, self.slots)
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(BaseException):
                    await task
            await self.warm.close()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._leave_sync)
        return 0
