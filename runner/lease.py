"""The runner's hold on its execution: a claim with a lease, kept alive by a heartbeat.

A lease that is not renewed expires, and the sweeper then marks the execution failed and
offers a resume: that is how a crashed runner (kill -9, lost task) is detected. The heartbeat
also reads the status back, so a stop request (`cancelling`) is seen even if the NOTIFY was
lost on the way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from aef.db import Database
from aef.errors import AefError
from aef.store import runner as runner_store
from runner.errors import RunnerError

log = logging.getLogger("aef.runner.lease")


class NotClaimable(RunnerError):
    """The execution is not queued, or another runner's lease is still live."""

    code, title = "not_claimable", "The execution cannot be claimed"


class LeaseLost(AefError):
    """Another runner holds the execution now: this one must stop writing and exit.

    Still an AefError (not a `runner.errors.RunnerError`): the engine's journal quotes an
    AefError's detail when a write it was part of is abandoned."""

    status, code, title = 409, "lease_lost", "The runner lost its lease"


def new_runner_id() -> str:
    """Host, pid and a random suffix: unique per process, readable in the database."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """Claim once, then heartbeat in the background until closed."""

    def __init__(self, db: Database, execution_id: str, runner_token: str, *,
                 lease_seconds: float, heartbeat_seconds: float,
                 runner_id: str | None = None,
                 on_status: Callable[[str], None] | None = None) -> None:
        self.db = db
        self.execution_id = execution_id
        self._token = runner_token
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.runner_id = runner_id or new_runner_id()
        self._on_status = on_status
        self._task: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    def _claim_sync(self) -> dict[str, Any]:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            row = runner_store.claim(conn, self.execution_id, self.runner_id, self.lease_seconds)
            if row is not None:
                return row
            blocker = runner_store.claim_blocker(conn, self.execution_id)
        if blocker is None:
            raise NotClaimable("Unknown execution or wrong runner token",
                               executionId=self.execution_id)
        reason = ("another runner holds a live lease" if blocker["lease_live"]
                  else f"the execution is {blocker['status']}")
        raise NotClaimable(f"Cannot claim the execution: {reason}",
                           executionId=self.execution_id, status=blocker["status"])

    async def claim(self) -> dict[str, Any]:
        """queued -> starting with our lease; raises NotClaimable."""
        return await asyncio.to_thread(self._claim_sync)

    def _beat_sync(self) -> str | None:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            return runner_store.heartbeat(conn, self.execution_id, self.runner_id,
                                          self.lease_seconds)

    async def beat(self) -> str | None:
        """Extend the lease now; returns the status (None: the lease is not ours any more)."""
        status = await asyncio.to_thread(self._beat_sync)
        if status is None:
            self.lost.set()
        elif self._on_status is not None:
            self._on_status(status)
        return status

    async def _loop(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.beat()
            except AefError as exc:  # database briefly unavailable: the lease has slack
                log.warning("heartbeat failed: %s", exc.detail)
            except Exception:
                log.exception("heartbeat failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="aef-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
