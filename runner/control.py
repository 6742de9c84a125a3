"""How a person reaches a live runner: NOTIFY wake-ups, with a polling backstop.

The API writes a command row (or answers a checkpoint, or sets `cancelling`) and the database
NOTIFYs this execution's wake channel (see `wake_channel`). A notification is only ever a
wake-up, never an instruction: its payload is ignored, and what the runner then does comes
from the rows it reads under its own role (status, commands, checkpoint answers), which RLS
and the state machines protect. Any session can call pg_notify(), so nothing else is safe.
LISTEN does not pass through a transaction pooler, so a poller reads the status and the
pending commands every second as well: a lost notification costs at most one second.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from aef.db import Database
from aef.settings import Settings
from aef.store import runner as runner_store
from runner.retry import retry_unavailable

log = logging.getLogger("aef.runner.control")
T = TypeVar("T")


class Stopped(Exception):
    """A person asked to stop: unwind, close the browser, write `cancelled`."""


def listen_url(settings: Settings) -> str | None:
    """The URL to LISTEN on: a session-capable one (direct or session pooler), or None when
    only a transaction pooler is configured (then the 1 s poll is the only wake-up)."""
    if not settings.db_listen:
        return None
    return settings.db_listen_url or settings.database_url


def wake_channel(runner_token: str) -> str:
    """The channel aef_private.wake_channel() NOTIFYs: derived from the runner token's hash,
    so a session that does not know the token can neither listen to it nor aim at it."""
    token_hash = hashlib.sha256(runner_token.encode()).digest()
    return "aef_wake_" + hashlib.sha256(token_hash + b"aef-wake").hexdigest()[:40]


@dataclass(frozen=True)
class Command:
    """A pending `aef_commands` row."""

    id: int
    command: str
    step_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class Control:
    """Wake-ups and commands for one execution."""

    def __init__(self, db: Database, database_url: str | None, execution_id: str,
                 runner_token: str,
                 *, poll_seconds: float = 1.0, listen: bool = True,
                 retry_seconds: float = 0.0) -> None:
        self.db = db
        self.retry_seconds = retry_seconds  # ride out a brief database outage
        self.database_url = database_url
        self.execution_id = execution_id
        self._token = runner_token
        self.poll_seconds = poll_seconds
        # False: polling only (no session-capable URL, or bench_checkpoint.py's baseline)
        self.listen = listen and database_url is not None
        self.channel = wake_channel(runner_token)
        self.stop_requested = False
        self.commands_hint = True  # read once at start: commands may predate the runner
        self.status: str | None = None
        self.listening = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()  # set with stop_requested: cuts any work in progress
        self._poke = asyncio.Event()  # a notification arrived: read the rows now
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        listen = [asyncio.create_task(self._listen(), name="aef-listen")] if self.listen else []
        self._tasks = [*listen, asyncio.create_task(self._poll(), name="aef-poll")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # signals -----------------------------------------------------------------------------------
    def observe_status(self, status: str) -> None:
        """Any reader of the execution row reports the status here (heartbeat, writes)."""
        self.status = status
        if status == "cancelling" and not self.stop_requested:
            self.request_stop()

    def request_stop(self) -> None:
        self.stop_requested = True
        self._stop.set()
        self._wake.set()

    async def unless_stopped(self, work: Awaitable[T]) -> T:
        """`work`, cancelled the moment a stop is requested (then `Stopped`).

        Every action and every manual input runs through this, so a stop never waits for a
        long one (a 10,000-character input, a long wait) to end: it completes within the
        wake-up latency, and the browser is closed right after.
        """
        task = asyncio.ensure_future(work)
        if self.stop_requested:
            task.cancel()
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stop.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise Stopped()

    def _on_notify(self) -> None:
        """Something changed: read the status and the commands now (the payload, whatever it
        says, is not read: it could come from anyone)."""
        self.commands_hint = True
        self._poke.set()
        self._wake.set()

    async def wait(self, seconds: float) -> None:
        """Sleep until something may have changed, or `seconds` (callers pass at most 1 s)."""
        if self.stop_requested:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self._wake.wait()
        self._wake.clear()

    # background --------------------------------------------------------------------------------
    async def _listen(self) -> None:
        if self.database_url is None:
            return
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
                async with conn:
                    await conn.execute(f"listen {self.channel}")  # channel: validated hex
                    self.listening = True
                    async for _ in conn.notifies():
                        self._on_notify()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poller covers us; try LISTEN again shortly
                if self.listening:
                    log.warning("LISTEN connection lost: %s", exc)
                self.listening = False
                await asyncio.sleep(2.0)

    def _poll_sync(self) -> dict[str, Any] | None:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            return runner_store.poll(conn, self.execution_id)

    async def poll_now(self) -> None:
        row = await asyncio.to_thread(self._poll_sync)
        if row is None:
            return
        self.observe_status(str(row["status"]))
        if row["last_command"] is not None and not self.commands_hint:
            self.commands_hint = True
            self._wake.set()

    async def _poll(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: wait_for swallows a cancel that races a set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._poke.wait()
            self._poke.clear()
            try:
                await self.poll_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("poll failed: %s", exc)

    # commands ----------------------------------------------------------------------------------
    def _fetch_sync(self) -> list[dict[str, Any]]:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            return runner_store.pending_commands(conn, self.execution_id)

    async def fetch(self) -> list[Command]:
        """Pending commands, oldest first (clears the hint)."""
        self.commands_hint = False
        rows = await retry_unavailable(self._fetch_sync, self.retry_seconds)
        return [Command(id=int(r["id"]), command=str(r["command"]), step_id=r["step_id"],
                        payload=dict(r["payload"] or {})) for r in rows]

    def _finish_sync(self, command_id: int, status: str) -> None:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            runner_store.finish_command(conn, command_id, status)

    async def finish(self, command: Command, status: str = "done") -> None:
        await retry_unavailable(lambda: self._finish_sync(command.id, status),
                                self.retry_seconds)
