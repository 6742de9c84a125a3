"""The journal: every write of one execution, each state change with its event.

Logs are buffered and go out with the next state change (or the flusher); a line that describes
a change is written in that change's transaction, never without it. A write that fails because
the database is briefly unavailable is retried, and a COMMIT whose connection dropped is
checked (`pg_xact_status`) before anything is written again (see `Journal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aef.db import Connection, Database
from aef.errors import AefError, ServiceUnavailable
from aef.store import runner as runner_store
from runner.retry import RETRY_FIRST_DELAY, RETRY_MAX_DELAY, RETRYABLE_CODES

if TYPE_CHECKING:
    from runner.redaction import Secrets

log = logging.getLogger("aef.runner")

T = TypeVar("T")

LOG_FLUSH_SECONDS: Final = 0.5


@dataclass
class _Attempt:
    """How far one write transaction got: enough to tell whether a lost COMMIT landed."""

    xid: str | None = None
    committing: bool = False  # every statement ran: a failure now is the COMMIT itself
    result: Any = None


class WriteOutcomeUnknown(ServiceUnavailable):
    """The connection dropped during COMMIT and the database could not say, within the retry
    budget, whether the transaction landed: nothing may be written again or re-buffered."""


class Journal:
    """Buffered logs and transactional state writes for one execution.

    Logs are buffered and written in one multi-row INSERT with the next state change, or by the
    flusher at least every LOG_FLUSH_SECONDS; whatever a transaction writes is announced by the
    event written in that same transaction, so a committed log line is durable and visible.

    A line that *describes* a state change ("Step completed: X") is not buffered: it is handed
    to `commit(says=...)` and written in that change's transaction, so it can never be flushed
    while the change itself is abandoned (it is then rewritten as "Not recorded: ... (why)").

    A write that fails because the database is unavailable or busy is retried with backoff for
    `retry_seconds` (the engine passes half the lease: the heartbeat keeps running meanwhile).
    If the connection dropped during COMMIT, the transaction id tells whether it landed
    (`pg_xact_status`) before anything is written again, so no event, line or step
    transition is written twice and event seq stays gapless.
    """

    def __init__(self, db: Database, execution_id: str, runner_token: str, secrets: Secrets,
                 on_status: Callable[[str], None], *, retry_seconds: float = 0.0) -> None:
        self.db = db
        self.execution_id = execution_id
        self._token = runner_token
        self.secrets = secrets
        self._on_status = on_status
        self.retry_seconds = retry_seconds
        # Progress lines not written yet, each with its place in the order they were logged:
        # a write takes the lines logged before it was asked for, never later ones.
        self._buffer: list[tuple[int, runner_store.LogRecord]] = []
        self._logged = 0
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        # Writes go out one after another in the order they were asked for: each waits for the
        # one before it (`_tail`). A write `submit`ted in the background that fails is kept in
        # `_failure`: every later write is then not made, until the engine has been told
        # (`commit` or `check` raises it once).
        self._tail: asyncio.Future[Any] | None = None
        self._failure: BaseException | None = None

    def entry(self, level: str, message: str, *, category: str = "execution",
              step_id: str | None = None,
              details: Mapping[str, Any] | None = None) -> runner_store.LogRecord:
        """A redacted line, not buffered: for `commit(says=...)` when it describes the change."""
        return runner_store.LogRecord(
            level=level, category=category, message=self.secrets.text(message),
            step_id=step_id,
            details=self.secrets.deep(dict(details)) if details is not None else None)

    def log(self, level: str, message: str, *, category: str = "execution",
            step_id: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        """A progress line: buffered, written with the next transaction."""
        record = self.entry(level, message, category=category, step_id=step_id,
                            details=details)
        self._buffer.append((self._next_place(), record))
        self._emit(record)

    def _next_place(self) -> int:
        self._logged += 1
        return self._logged

    def _emit(self, record: runner_store.LogRecord) -> None:
        getattr(log, "warning" if record.level == "warn" else record.level, log.info)(
            "%s", record.message,
            extra={"executionId": self.execution_id, "stepId": record.step_id})

    def _transaction(self, records: list[runner_store.LogRecord],
                     change: Callable[[Connection], Any] | None,
                     event: str | Callable[[Any], str] | None,
                     error: Mapping[str, Any] | None, attempt: _Attempt) -> None:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            entries = runner_store.insert_logs(conn, self.execution_id, records)
            result = change(conn) if change is not None else None
            event_type = event(result) if callable(event) else event
            if event_type is not None and (change is not None or entries):
                attempt.xid = runner_store.insert_event_returning_xid(
                    conn, self.execution_id, event_type, logs=entries, error=error)
            else:
                attempt.xid = runner_store.transaction_id(conn)
            attempt.result = result
            attempt.committing = True

    def _xact_status(self, xid: str) -> str | None:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            return runner_store.transaction_status(conn, xid)

    async def _landed(self, xid: str | None, deadline: float) -> bool:
        """Whether the transaction whose COMMIT lost its connection committed.

        Waits while the server still runs it (it is finishing the COMMIT, or has not noticed
        the lost client yet) and while the database is unreachable, up to `deadline`.
        """
        loop = asyncio.get_running_loop()
        delay = RETRY_FIRST_DELAY
        while xid is not None:
            try:
                status = await asyncio.to_thread(self._xact_status, xid)
            except AefError as exc:
                if exc.code not in RETRYABLE_CODES:
                    raise
                status = "in progress"
            if status == "committed":
                return True
            if status == "aborted":
                return False
            if status is None or loop.time() >= deadline:
                break
            await asyncio.sleep(min(delay, deadline - loop.time()))
            delay = min(delay * 2, RETRY_MAX_DELAY)
        raise WriteOutcomeUnknown(
            "The database is unavailable; whether the last write landed is unknown",
            code="database_unavailable")

    async def _write(self, records: list[runner_store.LogRecord],
                     change: Callable[[Connection], T] | None,
                     event: str | Callable[[Any], str] | None,
                     error: Mapping[str, Any] | None, deadline: float) -> T | None:
        """One transaction, retried while the database is briefly unavailable or busy."""
        loop = asyncio.get_running_loop()
        delay = RETRY_FIRST_DELAY
        tries = 0
        while True:
            tries += 1
            attempt = _Attempt()
            try:
                await asyncio.to_thread(self._transaction, records, change, event, error,
                                        attempt)
                break
            except AefError as exc:
                if exc.code not in RETRYABLE_CODES:
                    raise
                if attempt.committing and await self._landed(attempt.xid, deadline):
                    log.warning("state write: the connection dropped during COMMIT, which "
                                "had landed; not written again")
                    break
                left = deadline - loop.time()
                if left <= 0:
                    log.error("state write abandoned after %d attempts (%s)", tries, exc.code)
                    raise
                wait = min(delay, left)  # the last attempt comes as the budget runs out
                log.warning("state write failed (%s); retrying in %.1f s (attempt %d)",
                            exc.code, wait, tries)
                await asyncio.sleep(wait)
                delay = min(delay * 2, RETRY_MAX_DELAY)
        if isinstance(attempt.result, Mapping) and "status" in attempt.result:
            self._on_status(str(attempt.result["status"]))
        return attempt.result

    async def commit(self, change: Callable[[Connection], T] | None = None, *,
                     event: str | Callable[[Any], str] | None = "execution_update",
                     error: Mapping[str, Any] | None = None,
                     says: Sequence[runner_store.LogRecord] = ()) -> T | None:
        """Buffered logs + `says` + `change` + the event, in one transaction, after every
        write asked for before it (`submit`); returns `change`'s result.

        `event` may be a function of `change`'s result (the type depends on what was found).
        `says` are the lines describing this change (from `entry`): written only with it.
        The retry budget counts from the call, so waiting for earlier writes uses it up too.
        If a write submitted earlier failed, this one is not made and that failure is raised
        (once: the next write is made again).
        """
        deadline = asyncio.get_running_loop().time() + self.retry_seconds
        return await self._in_order(change, event, error, says, deadline, tells=True)

    async def _in_order(self, change: Callable[[Connection], T] | None,
                        event: str | Callable[[Any], str] | None,
                        error: Mapping[str, Any] | None, says: Sequence[runner_store.LogRecord],
                        deadline: float, *, tells: bool) -> T | None:
        link = self._chain(self._in_turn(change, event, error, says, deadline, None,
                                         self._logged, keeps=False, tells=tells))
        try:
            return await asyncio.shield(link)
        except asyncio.CancelledError:
            # Cancelled (time limit, signal) while the write goes on: wait for it, so the
            # lines are neither lost nor written twice, then let the cancellation go on.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(link), 30)
            raise

    def submit(self, change: Callable[[Connection], Any], *,
               event: str | Callable[[Any], str] | None = "execution_update",
               says: Sequence[runner_store.LogRecord] = (),
               after: Awaitable[Any] | None = None) -> None:
        """`commit` in the background: the caller goes on (its next action) while the write
        waits for `after` (a screenshot upload; it must not raise) and for every write asked
        for before it. Order and exactly-once are `commit`'s; a failure is raised by the next
        `commit` or `check`."""
        self._chain(self._in_turn(change, event, None, says, None, after, self._logged,
                                  keeps=True, tells=False))

    def check(self) -> None:
        """Raise (once) the failure of a write made in the background, if one failed."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def settle(self) -> None:
        """Wait until every write asked for so far is made; raise a background failure."""
        tail = self._tail
        if tail is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(tail)
        self.check()

    def _chain(self, write: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        previous = self._tail

        async def in_order() -> T:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(previous)
            return await write

        link = asyncio.ensure_future(in_order())
        self._tail = link
        link.add_done_callback(self._forget)
        return link

    def _forget(self, link: asyncio.Future[Any]) -> None:
        if self._tail is link:
            self._tail = None
        if not link.cancelled():
            link.exception()  # retrieved: a background failure is kept in `_failure`

    async def _in_turn(self, change: Callable[[Connection], T] | None,
                       event: str | Callable[[Any], str] | None,
                       error: Mapping[str, Any] | None, says: Sequence[runner_store.LogRecord],
                       deadline: float | None, after: Awaitable[Any] | None, upto: int, *,
                       keeps: bool, tells: bool) -> T | None:
        """One write in its turn, with the lines logged before it was asked for (`upto`): not
        made when an earlier background write failed.

        `keeps`: a background write, whose failure is kept for the engine; `tells`: the
        engine's own write, which raises a kept failure and so has told it (the flusher's
        does neither: its lines stay buffered)."""
        if after is not None:
            with contextlib.suppress(Exception):
                await after
        if self._failure is not None:
            failure = self._failure
            if tells:
                self._failure = None  # the engine is told now
            self._abandon([], says, failure, known=True)
            raise failure
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.retry_seconds
        try:
            return await self._commit_now(change, event, error, says, deadline, upto)
        except BaseException as exc:
            if keeps and self._failure is None:
                self._failure = exc
            raise

    async def _commit_now(self, change: Callable[[Connection], T] | None,
                          event: str | Callable[[Any], str] | None,
                          error: Mapping[str, Any] | None, says: Sequence[runner_store.LogRecord],
                          deadline: float, upto: int) -> T | None:
        async with self._lock:
            buffered = [line for line in self._buffer if line[0] <= upto]
            self._buffer = [line for line in self._buffer if line[0] > upto]
            records = [record for _, record in buffered] + list(says)
            write = asyncio.ensure_future(self._write(records, change, event, error, deadline))
            try:
                result = await asyncio.shield(write)
            except asyncio.CancelledError:
                # Cancelled (time limit, signal) while the write goes on: wait for it, so the
                # lines are neither lost nor written twice, then let the cancellation go on.
                try:
                    result = await asyncio.wait_for(asyncio.shield(write), 30)
                except BaseException as exc:
                    if not write.done():
                        write.cancel()  # no new attempt; one in flight may still land
                    self._abandon(buffered, says, exc, known=write.done())
                    raise
                self._said(says)
                raise
            except BaseException as exc:
                self._abandon(buffered, says, exc, known=True)
                raise
            self._said(says)
            return result

    def _said(self, says: Sequence[runner_store.LogRecord]) -> None:
        for record in says:
            self._emit(record)

    def _abandon(self, buffered: list[tuple[int, runner_store.LogRecord]],
                 says: Sequence[runner_store.LogRecord], exc: BaseException, *,
                 known: bool) -> None:
        """The write did not happen: progress lines wait for the next write, and the lines
        describing the change are rewritten as what is true now (never written as they were).

        When it is unknown whether it landed, nothing is re-buffered (no line twice).
        """
        if not known or isinstance(exc, WriteOutcomeUnknown):
            log.error("a write's outcome is unknown; %d log line(s) may be missing",
                      len(buffered) + len(says))
            return
        self._buffer = sorted([*buffered, *self._buffer], key=lambda line: line[0])
        reason = (exc.detail if isinstance(exc, AefError)
                  else "interrupted" if isinstance(exc, asyncio.CancelledError)
                  else type(exc).__name__)
        for record in says:
            truthful = dataclasses.replace(
                record, level="error" if record.level == "error" else "warn",
                message=f"Not recorded: {record.message} ({self.secrets.text(reason)})")
            self._buffer.append((self._next_place(), truthful))
            self._emit(truthful)

    async def flush(self) -> None:
        if self._buffer and self._failure is None:  # a failure is for the engine to hear
            deadline = asyncio.get_running_loop().time() + self.retry_seconds
            await self._in_order(None, "execution_update", None, (), deadline, tells=False)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next flush retries the same lines
                log.warning("log flush failed: %s", exc)

    def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="aef-log-flush")

    async def close(self) -> None:
        tail = self._tail
        if tail is not None:  # every write asked for is made (or has failed) first
            with contextlib.suppress(BaseException):
                await asyncio.shield(tail)
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None
