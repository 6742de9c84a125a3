"""The runner engine: one execution, one Chromium session, every step visible.

`run_execution(settings, execution_id, runner_token)` claims the execution (lease), opens the
browser and walks the plan. Each step is written `running`, performed action by action, and
written `completed` with a screenshot URL; every such write goes with its `aef_events` row in
one transaction (`Journal.commit`). A person steers the run through checkpoints (asked before
a step) and commands (pause, stop, retry, skip, takeover...), which reach the runner by NOTIFY
with a one-second polling backstop (runner/control.py).

Where the design left a choice open:

- Loop iterations are numbered from 1; a step outside any loop has iteration 0. A nested loop
  numbers its body `outer * LOOP_STRIDE + inner`, so every (step_id, iteration) is unique and
  stable across a resume.
- A container (compound, loop, decision) is `completed` only after its body, so a resume
  re-enters it; a decision's branch is stored in its row's `result` as soon as it is known and
  reused on resume (a person is not asked twice).
- Progress is the share of the plan finished: each top-level step weighs the same, a
  container splits its weight between its children (a loop between its iterations).
- Auto-retry waits (transient errors) are announced like hard errors, with `auto_retry_in`:
  the execution is `waiting_recovery` during the delay and the person may retry at once,
  skip, take over or stop.
- Resolved grounding locators are stored per step row (`locator`) and reused from the latest
  completed row of the same step in this execution (later loop iterations, a rerun after a
  retry or resume). RLS keeps a runner to its own execution, so there is no cross-execution
  cache.
- A state write that fails because the database is unavailable or busy (a restart, a
  failover) is retried with backoff for half the lease, the heartbeat going on meanwhile; if
  the connection dropped during COMMIT, `pg_xact_status` says whether it landed before any
  retry. Only a longer outage fails the run (resumable). A log line that describes a state
  change is written in that change's transaction, never flushed without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from aef import rules
from aef.db import Connection, Database, get_database
from aef.errors import AefError, ServiceUnavailable
from aef.models import Action, AefConfig, ComputeSpec, PlanStep, RecoveryPolicy
from aef.settings import Settings
from aef.storage import ScreenshotStore
from aef.store import runner as store
from runner import actions
from runner.browser import BrowserSession, capture_jpeg, open_browser
from runner.control import Command, Control, Stopped, listen_url
from runner.grounding import build_resolver, match_summary
from runner.lease import Lease, LeaseLost, NotClaimable
from runner.preview import build_preview, covered_steps, outlined_screenshot
from runner.redaction import Secrets
from runner.retry import (
    RETRY_FIRST_DELAY,
    RETRY_MAX_DELAY,
    RETRYABLE_CODES,
    retry_unavailable,
)
from runner.takeover import InputRefused, Takeover

log = logging.getLogger("aef.runner")

T = TypeVar("T")

LOOP_STRIDE: Final = 10_000
LOG_FLUSH_SECONDS: Final = 0.5
TAKEOVER_SCREENSHOT_SECONDS: Final = 1.0
MANUAL_STEP_TIMEOUT_SECONDS: Final = 3600
# A database briefly unavailable (restart, failover) or busy: a write is retried with backoff
# for half the lease (Engine), so the heartbeat can still renew it before it runs out.

RECOVERY_OPTIONS: Final = (
    {"action": "retry", "label": "Retry the step"},
    {"action": "skip", "label": "Skip the step and continue"},
    {"action": "manual_takeover", "label": "Take over the browser"},
    {"action": "stop", "label": "Stop the execution"},
)
RESUME_OPTIONS: Final = (
    {"action": "resume", "label": "Resume from the last completed step"},
)
CHECKPOINT_DEFAULT_OUTCOME: Final = {"approve": "approved", "reject": "rejected",
                                     "skip": "skipped", "pause": "paused"}


# --- control flow signals -------------------------------------------------------------------
class Rejected(Exception):
    """A checkpoint was rejected (or expired with reject): the execution ends `cancelled`."""

    def __init__(self, step_id: str, iteration: int, title: str, expired: bool) -> None:
        super().__init__(title)
        self.step_id, self.iteration, self.title, self.expired = step_id, iteration, title, expired


class NextItem(Exception):
    """The rest of this loop item is given up (skipped at its checkpoint, or abandoned by a
    step's error handler, `next_item`): the loop goes on with the next item."""

    def __init__(self, why: str = "skipped at its checkpoint") -> None:
        super().__init__(why)
        self.why = why


class PausedOut(Exception):
    """Nobody answered a checkpoint (timeout action `pause`) nor resumed within the grace
    period: close the browser, leave the execution `paused`, release the lease."""


class EndOfPlan(Exception):
    """An `end` step was reached: the run is complete."""


class PlanError(Exception):
    """A structural problem a person can fix by retrying or skipping (e.g. a missing list)."""


class StoppedByPolicy(Exception):
    """A step's recovery policy (`stop`) fails the execution."""


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | cancelled | failed | paused | lost
    message: str
    error: Mapping[str, Any] | None = None


# --- the journal: every write, each state change with its event -------------------------------
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
        self._buffer: list[store.LogRecord] = []
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    def entry(self, level: str, message: str, *, category: str = "execution",
              step_id: str | None = None,
              details: Mapping[str, Any] | None = None) -> store.LogRecord:
        """A redacted line, not buffered: for `commit(says=...)` when it describes the change."""
        return store.LogRecord(
            level=level, category=category, message=self.secrets.text(message),
            step_id=step_id,
            details=self.secrets.deep(dict(details)) if details is not None else None)

    def log(self, level: str, message: str, *, category: str = "execution",
            step_id: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        """A progress line: buffered, written with the next transaction."""
        record = self.entry(level, message, category=category, step_id=step_id,
                            details=details)
        self._buffer.append(record)
        self._emit(record)

    def _emit(self, record: store.LogRecord) -> None:
        getattr(log, "warning" if record.level == "warn" else record.level, log.info)(
            "%s", record.message,
            extra={"executionId": self.execution_id, "stepId": record.step_id})

    def _transaction(self, records: list[store.LogRecord],
                     change: Callable[[Connection], Any] | None,
                     event: str | Callable[[Any], str] | None,
                     error: Mapping[str, Any] | None, attempt: _Attempt) -> None:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            entries = store.insert_logs(conn, self.execution_id, records)
            result = change(conn) if change is not None else None
            event_type = event(result) if callable(event) else event
            if event_type is not None and (change is not None or entries):
                store.insert_event(conn, self.execution_id, event_type, logs=entries,
                                   error=error)
            attempt.xid = store.transaction_id(conn)
            attempt.result = result
            attempt.committing = True

    def _xact_status(self, xid: str) -> str | None:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            return store.transaction_status(conn, xid)

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

    async def _write(self, records: list[store.LogRecord],
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
                     says: Sequence[store.LogRecord] = ()) -> T | None:
        """Buffered logs + `says` + `change` + the event, in one transaction.

        `event` may be a function of `change`'s result (the type depends on what was found).
        `says` are the lines describing this change (from `entry`): written only with it.
        The retry budget counts from the call, so waiting for the lock uses it up too.
        """
        deadline = asyncio.get_running_loop().time() + self.retry_seconds
        async with self._lock:
            buffered, self._buffer = self._buffer, []
            write = asyncio.ensure_future(
                self._write([*buffered, *says], change, event, error, deadline))
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

    def _said(self, says: Sequence[store.LogRecord]) -> None:
        for record in says:
            self._emit(record)

    def _abandon(self, buffered: list[store.LogRecord], says: Sequence[store.LogRecord],
                 exc: BaseException, *, known: bool) -> None:
        """The write did not happen: progress lines wait for the next write, and the lines
        describing the change are rewritten as what is true now (never written as they were).

        When it is unknown whether it landed, nothing is re-buffered (no line twice).
        """
        if not known or isinstance(exc, WriteOutcomeUnknown):
            log.error("a write's outcome is unknown; %d log line(s) may be missing",
                      len(buffered) + len(says))
            return
        self._buffer[:0] = buffered
        reason = (exc.detail if isinstance(exc, AefError)
                  else "interrupted" if isinstance(exc, asyncio.CancelledError)
                  else type(exc).__name__)
        for record in says:
            truthful = dataclasses.replace(
                record, level="error" if record.level == "error" else "warn",
                message=f"Not recorded: {record.message} ({self.secrets.text(reason)})")
            self._buffer.append(truthful)
            self._emit(truthful)

    async def flush(self) -> None:
        if self._buffer:
            await self.commit()

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
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None


# --- variables and placeholders ---------------------------------------------------------------
def lookup(path: str, *scopes: Mapping[str, Any]) -> Any:
    """A dotted path (`email.id`, `emails.0.subject`) in the first scope that has its head."""
    head, *rest = path.split(".")
    for scope in scopes:
        if head in scope:
            value = scope[head]
            for part in rest:
                if isinstance(value, Mapping) and part in value:
                    value = value[part]
                elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    value = value[int(part)]
                else:
                    raise KeyError(path)
            return value
    raise KeyError(path)


def iteration_number(parent: int, index: int) -> int:
    """Unique, stable iteration numbers for nested loops (index is 1-based)."""
    return parent * LOOP_STRIDE + index


# --- the engine -------------------------------------------------------------------------------
@dataclass
class _Run:
    """What one step run carries down the tree."""

    iteration: int = 0
    scope: dict[str, Any] = field(default_factory=dict)
    recovery: RecoveryPolicy | None = None  # the innermost enclosing step's policy


@dataclass
class _Tries:
    """What one task's recovery policy has used up so far."""

    retries: int = 0
    fallback_done: bool = False


# How an engine gets its browser: (work dir, on_block) -> a session context manager. The
# default launches a fresh Chromium; a pool worker hands over the warm one it launched ahead.
BrowserFactory = Callable[[Path, Callable[[str, str], None]],
                          AbstractAsyncContextManager[BrowserSession]]


class Engine:
    """Runs one claimed execution. Create with `run_execution`, not directly."""

    def __init__(self, settings: Settings, db: Database, execution_id: str, runner_token: str,
                 *, screenshots: ScreenshotStore | None = None,
                 runner_id: str | None = None,
                 browser: BrowserFactory | None = None) -> None:
        self.settings = settings
        self._browser = browser or (lambda work_dir, on_block: open_browser(
            settings, work_dir=work_dir, on_block=on_block))
        self._log_filter: logging.Filter | None = None
        self._handed_back: str | None = None
        self.db = db
        self.execution_id = execution_id
        self._token = runner_token
        self.screenshots = screenshots if screenshots is not None else ScreenshotStore(settings)
        self.control = Control(db, listen_url(settings), execution_id, runner_token,
                               retry_seconds=settings.lease_seconds / 2)
        self.lease = Lease(db, execution_id, runner_token, lease_seconds=settings.lease_seconds,
                           heartbeat_seconds=settings.heartbeat_seconds, runner_id=runner_id,
                           on_status=self.control.observe_status)
        self.secrets = Secrets({})
        self.journal = Journal(db, execution_id, runner_token, self.secrets, self._saw_status,
                               retry_seconds=settings.lease_seconds / 2)
        self.status = "queued"
        self.config = AefConfig()
        self.plan: list[PlanStep] = []
        self.variables: dict[str, Any] = {}
        self.done: set[tuple[str, int]] = set()
        self.results: dict[tuple[str, int], dict[str, Any]] = {}
        self.step_ids: set[str] | None = None
        self.resume_target: str | None = None
        self.session: BrowserSession | None = None
        self.browser_state: dict[str, Any] = {}
        self._progress = 0.0
        self._step_end = 0.0  # the progress the step being run reaches when it completes
        self._unit = 0.0
        self._locators: dict[str, dict[str, Any]] = {}
        self._terminated: str | None = None
        self.preskip: set[str] = set()
        # steps a checkpoint's skip covered, skipped when reached: (step id, iteration)
        self.skip_covered: set[tuple[str, int]] = set()
        self.back_to: str | None = None
        self.resolver = build_resolver(settings)

    def terminate(self, reason: str) -> None:
        """The process is being shut down (SIGTERM): unwind like a stop, but end `failed`
        (resumable) unless a person had asked to stop."""
        self._terminated = reason
        self.control.request_stop()

    def hand_back(self, reason: str) -> None:
        """A draining pool worker's last resort: unwind like a stop, write no end, release the
        lease at once; the sweeper then resumes the execution from its last completed step
        (on another worker when one is live)."""
        self._handed_back = reason
        self.control.request_stop()

    # status bookkeeping ------------------------------------------------------------------------
    def _saw_status(self, status: str) -> None:
        self.status = status
        self.control.observe_status(status)

    @property
    def page(self) -> Any:
        assert self.session is not None
        return self.session.page

    def _percent(self) -> int:
        return max(0, min(100, math.floor(self._progress * 100 + 1e-6)))

    # the top -----------------------------------------------------------------------------------
    async def run(self) -> Outcome:
        """Claim, run, always close the browser, write the final state."""
        try:
            row = await self.lease.claim()
        except NotClaimable as exc:
            log.error("not claimed: %s", exc.detail)
            return Outcome("lost", exc.detail)
        self._saw_status(str(row["status"]))
        self.lease.start()
        await self.control.start()
        self.journal.start()
        outcome: Outcome
        try:
            outcome = await self._run_with_limit(row)
            try:
                await self._finish(outcome)
            except Exception as exc:  # the database is gone: the lease expires, the sweeper acts
                log.error("the final state could not be written: %s",
                          self.secrets.text(f"{type(exc).__name__}: {exc}"))
        finally:
            await self.journal.close()
            await self.control.close()
            await self.lease.close()
            if self._log_filter is not None:  # a pool worker's next execution has other secrets
                for handler in logging.getLogger().handlers:
                    handler.removeFilter(self._log_filter)
        if outcome.status == "paused":  # after the heartbeat stopped: it would renew it
            await self._release_lease()
        elif outcome.status == "handed_back":  # likewise: the sweeper takes it from here
            try:
                await self._query(lambda c: store.hand_back_lease(c, self.execution_id,
                                                                  self.lease.runner_id))
            except Exception as exc:  # then the lease simply runs out
                log.error("the lease could not be handed back: %s", type(exc).__name__)
        return outcome

    async def _release_lease(self) -> None:
        try:
            await self._query(lambda c: store.release_lease(c, self.execution_id,
                                                            self.lease.runner_id))
        except Exception as exc:  # the lease then expires and the sweeper fails it (resumable)
            log.error("the lease could not be released: %s", type(exc).__name__)

    async def _run_with_limit(self, row: Mapping[str, Any]) -> Outcome:
        limit = self.settings.execution_time_limit_seconds
        watcher = asyncio.create_task(self._watch_lease(), name="aef-lease-watch")
        try:
            async with asyncio.timeout(limit):
                return await self._run_claimed(row)
        except TimeoutError:
            return Outcome("failed", f"The execution exceeded its time limit of {limit} s")
        finally:
            watcher.cancel()

    async def _watch_lease(self) -> None:
        """Wake the engine when the lease is lost, so it stops writing promptly."""
        await self.lease.lost.wait()
        self.control.request_stop()

    async def _run_claimed(self, row: Mapping[str, Any]) -> Outcome:
        try:
            await self._load(row)
        except (PlanError, ValidationError) as exc:
            return Outcome("failed", f"The document cannot be run: {exc}")
        try:
            work_dir = Path(self.settings.work_dir) / self.execution_id
            async with self._browser(work_dir, self._on_block) as session:
                self.session = session
                try:
                    return await self._run_plan(session)
                finally:
                    self.session = None
        except Stopped:
            if self.lease.lost.is_set():
                return Outcome("lost", "Another runner holds this execution")
            if self._handed_back is not None and self.status != "cancelling":
                return Outcome("handed_back", self._handed_back)
            if self._terminated is not None and self.status != "cancelling":
                return Outcome("failed", self._terminated)
            return Outcome("cancelled", "Execution stopped on request")
        except PausedOut as exc:
            return Outcome("paused", str(exc))
        except Rejected as exc:
            how = "expired (default: reject)" if exc.expired else "was rejected"
            return Outcome("cancelled", f"Checkpoint '{exc.title}' {how}; execution cancelled",
                           {"stepId": exc.step_id, "iteration": exc.iteration})
        except LeaseLost:
            return Outcome("lost", "Another runner holds this execution")
        except StoppedByPolicy as exc:
            return Outcome("failed", str(exc))
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                raise
            trace = "".join(traceback.format_exception(exc))
            log.error("execution failed\n%s", self.secrets.text(trace))
            return Outcome("failed", f"The runner failed: {type(exc).__name__}: {exc}")

    async def _load(self, row: Mapping[str, Any]) -> None:
        def read(conn: Connection) -> tuple[Any, ...]:
            document = store.get_document(conn, str(row["document_id"]))
            return (document, store.get_secrets(conn, self.execution_id),
                    store.get_steps(conn, self.execution_id))

        with_db = await self._query(read)
        document, secret_values, steps = with_db
        self.secrets = Secrets(secret_values)
        self.journal.secrets = self.secrets
        if secret_values:  # process logs too (stderr / CloudWatch), whoever writes them
            self._log_filter = actions.Redactor(secret_values).logging_filter()
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._log_filter)
        if document is None:
            raise PlanError("the document is not readable")
        body = document["document"] if isinstance(document["document"], dict) else {}
        section = body.get("aef") if isinstance(body.get("aef"), dict) else None
        if section is None or not isinstance(section.get("plan"), list):
            raise PlanError("it has no aef.plan")
        self.config = AefConfig.model_validate(section.get("config") or {})
        self.plan = [PlanStep.model_validate(step) for step in section["plan"]]
        self.variables = dict(row.get("variables") or {})
        self.step_ids = set(row["step_ids"]) if row.get("step_ids") else None
        self.resume_target = row.get("resume_from") or None
        browser = row.get("browser")
        before: Mapping[str, Any] = browser if isinstance(browser, Mapping) else {}
        # a pause released the browser: the resumed run goes back to the page it was on
        self.back_to = (str(before.get("currentUrl") or "") or None
                        if before.get("mode") == "released" else None)
        for step_row in steps:
            key = (str(step_row["step_id"]), int(step_row["iteration"]))
            if step_row["status"] in ("completed", "skipped"):
                self.done.add(key)
            if isinstance(step_row["result"], dict):
                self.results[key] = step_row["result"]
        known = set(_all_ids(self.plan))
        if self.resume_target is not None and self.resume_target not in known:
            self.journal.log("warn", f"resume_from names no step of this plan "
                             f"({self.resume_target}); running from the start")
            self.resume_target = None
        if self.step_ids is not None:
            self.step_ids &= known
            if not self.step_ids:
                raise PlanError("none of the selected step ids is in the plan")
            self._unit = 1.0 / len(self.step_ids)
        self.screenshots.start_at(self.execution_id, int(row.get("last_seq") or 0) + 1)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            return fn(conn)

    async def _query(self, fn: Callable[[Connection], T]) -> T:
        """A read (or an idempotent update) in its own transaction, retried like a state write
        while the database is briefly unavailable or busy: a restart must not fail the run."""
        return await retry_unavailable(lambda: self._read(fn), self.journal.retry_seconds)

    def _on_block(self, url: str, reason: str) -> None:
        self.journal.log("warn", f"Blocked a request to {url}: {reason}", category="safety")

    async def _run_plan(self, session: BrowserSession) -> Outcome:
        self.browser_state = {"isReady": True, "currentUrl": session.page.url,
                              "lastAction": "Browser ready", "mode": "automatic"}
        self.journal.log("debug", "Browser ready", category="browser",
                         details={"pid": session.pid})
        resumed = bool(self.done) or self.resume_target is not None
        await self._commit(status="running", browser=self.browser_state, current=None,
                           says=self.journal.entry(
                               "info", "Resuming execution" if resumed else "Execution started",
                               details={"runnerId": self.lease.runner_id,
                                        "steps": len(self.plan)}))
        await self._launch_commands()
        if self.back_to is not None and self.back_to.startswith(("http://", "https://")):
            await self._return_to(self.back_to)
        try:
            weight = 1.0 / max(1, len(self.plan))
            for step in self.plan:
                await self._visit(step, _Run(), weight)
        except EndOfPlan:
            pass
        return Outcome("completed", "Execution completed")

    async def _return_to(self, url: str) -> None:
        """Open the page a released pause left (through the network guard, like any
        navigation); a failure is a warning: the next step's own recovery applies."""
        try:
            result = await self._perform(Action(type="navigate", url=url), _Run(), None, 1)
            self.browser_state["currentUrl"] = result.url
            self.journal.log("info", f"Back on the page the paused run was on: {result.url}",
                             category="browser")
        except Exception as exc:
            self.journal.log("warn", f"Could not reopen the page the paused run was on: "
                             f"{self._describe(exc)}", category="browser")

    async def _launch_commands(self) -> None:
        """Commands written before this runner existed (the API queues them with a launch).

        `skip <step>` on a failed execution is delivered this way: the step is skipped when
        reached. retry / resume / run_step were the reason for the launch itself. Anything
        else stays pending for the normal handling between actions.
        """
        for command in await self.control.fetch():
            if command.command == "skip" and command.step_id:
                self.preskip.add(command.step_id)
                await self.control.finish(command, "done")
            elif command.command in ("retry", "resume", "run_step"):
                await self.control.finish(command, "done")
            else:
                self.control.commands_hint = True

    # writes ------------------------------------------------------------------------------------
    async def _commit(self, *, event: str = "execution_update", status: str | None = None,
                      step: tuple[PlanStep | str, int, str] | None = None,
                      step_fields: Mapping[str, Any] | None = None,
                      current: str | None = store.UNSET, browser: Mapping[str, Any] | None = None,
                      error: Mapping[str, Any] | None = store.UNSET, save_variables: bool = False,
                      extra: Callable[[Connection], Any] | None = None,
                      event_error: Mapping[str, Any] | None = None,
                      says: store.LogRecord | None = None) -> Any:
        """One transaction: logs, an optional step row change, the execution row, the event.

        `says` (from `journal.entry`) is the line describing this change: it is written only
        with the change, never on its own (see Journal).
        """
        fields = dict(step_fields or {})
        for key in ("error", "result", "locator"):
            if fields.get(key) is not None:
                fields[key] = self.secrets.deep(fields[key])
        redacted_error = (self.secrets.deep(dict(error)) if error not in (store.UNSET, None)
                          else error)
        browser_patch = self.secrets.deep(dict(browser)) if browser is not None else None
        variables = self.secrets.deep(self.variables) if save_variables else None
        progress = self._percent()
        extra_result: Any = None

        def change(conn: Connection) -> Any:
            nonlocal extra_result
            extra_result = extra(conn) if extra is not None else None
            if step is not None:
                plan_step, iteration, step_status = step
                step_id = plan_step if isinstance(plan_step, str) else plan_step.id
                label = None if isinstance(plan_step, str) else plan_step.label
                store.upsert_step(conn, self.execution_id, step_id, iteration, step_status,
                                  label=label, **fields)
            row = store.update_execution(
                conn, self.execution_id, status=status, progress=progress,
                current_step_id=current, browser=browser_patch, variables=variables,
                error=redacted_error)
            if row is None:
                raise LeaseLost("the execution row is not visible any more")
            return row  # the journal reads the status from it

        try:
            row = await self.journal.commit(change, event=event, error=event_error,
                                            says=(says,) if says is not None else ())
            return extra_result if extra is not None else row
        except AefError as exc:
            if exc.code == "illegal_transition":
                current_status = await self._query(
                    lambda c: store.get_status(c, self.execution_id))
                if current_status == "cancelling":
                    self._saw_status(current_status)
                    raise Stopped() from exc
                if current_status in store.TERMINAL:  # e.g. the sweeper ended it meanwhile
                    raise LeaseLost(f"the execution is already {current_status}") from exc
            raise

    # the tree ----------------------------------------------------------------------------------
    def _selected_within(self, step: PlanStep) -> bool:
        """Whether `step` or anything below it is among the execution's step_ids."""
        assert self.step_ids is not None
        if step.id in self.step_ids:
            return True
        below = list(step.children)
        if step.decision is not None:
            below += step.decision.yes + step.decision.no
        return any(self._selected_within(child) for child in below)

    def _contains(self, step: PlanStep, step_id: str) -> bool:
        below = list(step.children)
        if step.decision is not None:
            below += step.decision.yes + step.decision.no
        return any(child.id == step_id or self._contains(child, step_id) for child in below)

    async def _visit(self, step: PlanStep, run: _Run, weight: float) -> None:
        """Run `step` unless a resume, a step selection or resume_from says otherwise."""
        start = self._progress
        if self.step_ids is not None and step.id not in self.step_ids:
            if not self._selected_within(step):
                return
            below = list(step.children)
            if step.decision is not None:
                below += step.decision.yes + step.decision.no
            for child in below:  # only the selected steps below run; their own weight counts
                await self._visit(child, run, 0.0)
            return
        if self.step_ids is not None:
            weight = self._unit
        if self.resume_target is not None:
            if step.id == self.resume_target:
                self.resume_target = None
            elif not self._contains(step, self.resume_target):
                self._progress = start + weight
                return
        if (step.id, run.iteration) in self.done:
            if self.step_ids is not None:
                self.journal.log("info", f"Already done, not run again: {step.label}",
                                 step_id=step.id)
            self._progress = start + weight
            return
        if (step.id, run.iteration) in self.skip_covered:
            self.skip_covered.discard((step.id, run.iteration))
            self.done.add((step.id, run.iteration))
            await self._commit(status="running", step=(step, run.iteration, "skipped"),
                               says=self.journal.entry(
                                   "info", f"Step skipped with the unit its checkpoint covered: "
                                   f"{step.label}", step_id=step.id, category="checkpoint"))
            self._progress = start + weight
            return
        if step.id in self.preskip:
            self.preskip.discard(step.id)
            self.done.add((step.id, run.iteration))
            await self._commit(status="running", step=(step, run.iteration, "skipped"),
                               says=self.journal.entry(
                                   "info", f"Step skipped as requested: {step.label}",
                                   step_id=step.id, category="command"))
            self._progress = start + weight
            return
        if await self._between(step, run) != "taken_over":  # else a person did this step
            self._step_end = start + weight
            await self._run_step(step, run, weight)
        self._progress = start + weight

    async def _run_step(self, step: PlanStep, run: _Run, weight: float) -> None:
        if step.checkpoint is not None and not self._checkpoint_is_the_step(step):
            covered = covered_steps(self.plan, step)
            answer = await self._ask(step, run, step.checkpoint.type, step.checkpoint.title,
                                     step.checkpoint.description,
                                     step.checkpoint.timeout_seconds,
                                     step.checkpoint.default_action, covered=covered)
            if answer == "skipped":
                await self._skip_unit(step, run, covered)
                return
        if step.recovery is not None and step.kind in ("compound", "loop", "decision"):
            run = dataclasses.replace(run, recovery=step.recovery)
        if step.kind == "compound":
            await self._run_compound(step, run, weight)
        elif step.kind == "loop":
            await self._run_loop(step, run, weight)
        elif step.kind == "decision":
            await self._run_decision(step, run, weight)
        elif step.kind == "end":
            await self._commit(status="running", step=(step, run.iteration, "completed"),
                               current=step.id,
                               says=self.journal.entry("info", f"Reached the end: {step.label}",
                                                       step_id=step.id))
            raise EndOfPlan()
        elif step.kind == "manual" or step.method == "manual":
            await self._run_manual(step, run)
        else:
            await self._run_task(step, run)

    async def _skip_unit(self, step: PlanStep, run: _Run, covered: list[PlanStep]) -> None:
        """Skip at a before_step checkpoint: the step and every step it covers; inside a loop
        the rest of this item too (NextItem), outside one the run goes on after the unit."""
        self.done.add((step.id, run.iteration))
        await self._commit(status="running", step=(step, run.iteration, "skipped"),
                           says=self.journal.entry(
                               "info", f"Step skipped at its checkpoint: {step.label}",
                               step_id=step.id, category="checkpoint"))
        if run.iteration:
            raise NextItem()
        self.skip_covered.update((c.id, run.iteration) for c in covered if c.id != step.id)

    @staticmethod
    def _checkpoint_is_the_step(step: PlanStep) -> bool:
        """A decision asked by checkpoint, or a manual step, uses its checkpoint as the step."""
        assert step.checkpoint is not None
        if step.kind == "decision" and step.decision is not None and not step.decision.rule:
            return step.checkpoint.type == "decision"
        if step.kind == "manual" or step.method == "manual":
            return step.checkpoint.type == "manual"
        return False

    async def _start_container(self, step: PlanStep, run: _Run, what: str) -> None:
        await self._commit(status="running", step=(step, run.iteration, "running"),
                           step_fields={"new_attempt": True}, current=step.id, error=None,
                           says=self.journal.entry("info", f"{what} started: {step.label}",
                                                   step_id=step.id))

    async def _finish_container(self, step: PlanStep, run: _Run,
                                result: Mapping[str, Any] | None = None, *,
                                says: store.LogRecord | None = None) -> None:
        self.done.add((step.id, run.iteration))
        await self._commit(step=(step, run.iteration, "completed"),
                           step_fields={"result": result} if result else None,
                           save_variables=True, says=says)

    async def _run_compound(self, step: PlanStep, run: _Run, weight: float) -> None:
        await self._start_container(step, run, "Step")
        share = weight / max(1, len(step.children))
        for child in step.children:
            await self._visit(child, run, share)
        await self._finish_container(step, run, says=self.journal.entry(
            "info", f"Step completed: {step.label}", step_id=step.id))

    def _loop_items(self, step: PlanStep, run: _Run) -> list[Any]:
        assert step.loop is not None
        limit = min(step.loop.max_iterations, self.settings.max_loop_iterations, LOOP_STRIDE - 1)
        if step.loop.over is None:
            return list(range(1, limit + 1))
        try:
            items = lookup(step.loop.over, run.scope, self.variables)
        except KeyError:
            raise PlanError(f"The loop's list '{step.loop.over}' is not set") from None
        if not isinstance(items, list):
            raise PlanError(f"The loop's '{step.loop.over}' is not a list")
        if len(items) > limit:
            self.journal.log("warn", f"The list has {len(items)} items; only the first "
                             f"{limit} are processed (loop limit)", step_id=step.id)
        return items[:limit]

    async def _run_loop(self, step: PlanStep, run: _Run, weight: float) -> None:
        if step.loop is None:
            raise PlanError(f"Loop step {step.id} has no loop specification")
        await self._start_container(step, run, "Loop")
        items = await self._with_recovery(step, run, lambda: self._loop_items(step, run))
        if items is None:  # skipped by the person
            return
        count = 0
        share = weight / max(1, len(items))
        for index, item in enumerate(items, start=1):
            child = _Run(iteration_number(run.iteration, index),
                         {**run.scope, step.loop.iterator: item}, run.recovery)
            self.journal.log("info", f"Iteration {index} of {len(items)}", step_id=step.id,
                             category="loop")
            part = share / max(1, len(step.children))
            try:
                for body_step in step.children:
                    await self._visit(body_step, child, part)
            except NextItem as given:
                await self._skip_item(step, child, index, len(items), given.why)
            count = index
            if step.loop.exit_condition and self._exit(step, child):
                break
        await self._finish_container(step, run, {"iterations": count}, says=self.journal.entry(
            "info", f"Loop completed after {count} iterations: {step.label}",
            step_id=step.id, category="loop"))

    async def _skip_item(self, step: PlanStep, run: _Run, index: int, total: int,
                         why: str) -> None:
        """What a loop item given up leaves: its unfinished steps `skipped` (so a resume does
        not run them), and a line saying why and that the loop goes on."""
        def skip(conn: Connection) -> list[str]:
            return store.skip_open_steps(conn, self.execution_id, run.iteration)

        skipped = await self._commit(status="running", extra=skip, says=self.journal.entry(
            "info", f"Item {index} of {total} {why}; "
            + ("going on with the next item" if index < total else "that was the last item"),
            step_id=step.id, category="loop"))
        self.done.update((step_id, run.iteration) for step_id in skipped or ())

    def _exit(self, step: PlanStep, run: _Run) -> bool:
        assert step.loop is not None and step.loop.exit_condition
        try:
            return rules.evaluate(step.loop.exit_condition, {**self.variables, **run.scope})
        except rules.RuleError as exc:
            self.journal.log("warn", f"Exit condition not evaluated ({exc.detail}); continuing",
                             step_id=step.id, category="loop")
            return False

    async def _run_decision(self, step: PlanStep, run: _Run, weight: float) -> None:
        decision = step.decision
        if decision is None:
            raise PlanError(f"Decision step {step.id} has no decision specification")
        key = (step.id, run.iteration)
        branch = (self.results.get(key) or {}).get("branch")
        if branch not in ("yes", "no"):
            branch = None
        if branch is None and decision.rule:
            try:
                branch = "yes" if rules.evaluate(decision.rule,
                                                 {**self.variables, **run.scope}) else "no"
                self.journal.log("info", f"Decision '{decision.question}': {branch} "
                                 f"(rule {decision.rule})", step_id=step.id, category="decision")
            except rules.RuleError as exc:
                self.journal.log("warn", f"The rule could not be evaluated ({exc.detail}); "
                                 "asking a person", step_id=step.id, category="decision")
        if branch is None:
            spec = step.checkpoint
            answer = await self._ask(
                step, run, "decision", spec.title if spec else decision.question,
                spec.description if spec else decision.question,
                spec.timeout_seconds if spec else self.config.checkpoint_timeout,
                spec.default_action if spec else "reject", decision=True)
            if answer == "skipped":
                await self._commit(status="running", step=(step, run.iteration, "skipped"),
                                   says=self.journal.entry(
                                       "info", f"Decision skipped: {step.label}",
                                       step_id=step.id))
                return
            branch = "yes" if answer == "approved" else "no"
            self.journal.log("info", f"Decision '{decision.question}': {branch} (answered by "
                             "a person)", step_id=step.id, category="decision")
        self.results[key] = {"branch": branch}
        await self._commit(status="running", step=(step, run.iteration, "running"),
                           step_fields={"new_attempt": True, "result": {"branch": branch}},
                           current=step.id, error=None)
        steps = decision.yes if branch == "yes" else decision.no
        share = weight / max(1, len(steps))
        for branch_step in steps:
            await self._visit(branch_step, run, share)
        await self._finish_container(step, run, {"branch": branch})

    # checkpoints -------------------------------------------------------------------------------
    async def _ask(self, step: PlanStep, run: _Run, checkpoint_type: str, title: str,
                   description: str | None, timeout_seconds: int, default_action: str, *,
                   decision: bool = False, manual: bool = False,
                   covered: list[PlanStep] | None = None) -> str:
        """Ask before the step runs; returns approved | skipped (| rejected for a decision).

        A rejection ends the execution (raises Rejected) except on a decision, where it is
        the no-branch. An unanswered checkpoint takes its default action when it expires;
        `pause` pauses the run (see `_pause_unanswered`) and, once resumed, asks again.
        A before_step checkpoint shows what its `covered` steps are about to do (`preview`).
        """
        choices = checkpoint_choices(checkpoint_type, step, run, covered or [step])
        while True:
            preview = (await self._preview(step, run, covered)
                       if covered is not None else None)
            row = await self._ask_once(step, run, checkpoint_type, title, description,
                                       timeout_seconds, default_action, manual=manual,
                                       preview=preview, choices=choices)
            status = str(row["status"])
            expired = status == "expired"
            if expired:
                status = CHECKPOINT_DEFAULT_OUTCOME[str(row["default_action"])]
                self.journal.log("warn", f"Checkpoint expired; default action: "
                                 f"{row['default_action']}", step_id=step.id,
                                 category="checkpoint")
            else:
                self.journal.log("info", f"Checkpoint {status}: {title}", step_id=step.id,
                                 category="checkpoint")
            if status == "paused":
                await self._pause_unanswered(step, run, title, timeout_seconds)
                continue
            if status == "rejected" and not decision:
                raise Rejected(step.id, run.iteration, title, expired)
            return status

    async def _ask_once(self, step: PlanStep, run: _Run, checkpoint_type: str, title: str,
                        description: str | None, timeout_seconds: int, default_action: str, *,
                        manual: bool, preview: Mapping[str, Any] | None,
                        choices: list[dict[str, str]]) -> dict[str, Any]:
        """Open the checkpoint and wait until it is answered or expired; returns its row."""
        def insert(conn: Connection) -> dict[str, Any]:
            return store.insert_checkpoint(
                conn, self.execution_id, step.id, run.iteration, checkpoint_type,
                self.secrets.text(title), self.secrets.text(description or "") or None,
                default_action, max(1, int(timeout_seconds)),
                preview=self.secrets.deep(dict(preview)) if preview is not None else None,
                choices=choices)

        checkpoint = await self._commit(
            event="checkpoint_required", status="waiting_checkpoint",
            step=(step, run.iteration, "waiting_checkpoint"), current=step.id,
            browser={"lastAction": f"Waiting for approval: {title}"}, extra=insert,
            says=self.journal.entry("info", f"Waiting for a person: {title}", step_id=step.id,
                                    category="checkpoint"))
        checkpoint_id = str(checkpoint["id"])

        async def answered() -> dict[str, Any] | None:
            def check(conn: Connection) -> dict[str, Any] | None:
                row = store.get_checkpoint(conn, checkpoint_id)
                if row is not None and row["status"] == "pending" and row["is_expired"]:
                    row = store.expire_checkpoint(conn, checkpoint_id) or row
                return row if row is not None and row["status"] != "pending" else None
            return await self._query(check)

        accept = frozenset({"takeover"}) if manual else frozenset()
        row: dict[str, Any] | None = None
        while row is None:
            got = await self._await(accept, check=answered)
            if isinstance(got, Command):  # a manual step: the person works in the browser
                row = await self._takeover_session(step, run, then="checkpoint",
                                                   until=answered, first=got)
            else:
                row = got
        return row

    async def _preview(self, step: PlanStep, run: _Run,
                       covered: list[PlanStep]) -> dict[str, Any] | None:
        """What the covered steps are about to do on the live page, with an outlined
        screenshot; never fails the run (a preview that cannot be made is left out)."""
        if self.session is None:
            return None
        try:
            preview = await build_preview(
                self.page, covered, variables={**self.variables, **run.scope},
                secrets=self.secrets.values, resolver=self.resolver)
            data = await outlined_screenshot(self.page, preview,
                                             secrets=self.secrets.values.values())
            if data is not None:
                key, url = await self.screenshots.put_async(
                    self.execution_id, f"{step.id}-preview", data)
                preview.screenshot, preview.screenshot_key = url, key
        except Exception as exc:
            self.journal.log("warn", f"No preview for the checkpoint: {type(exc).__name__}",
                             step_id=step.id, category="checkpoint")
            return None
        unresolved = sum(1 for a in preview.actions
                         if a["target"] is not None and not a["target"]["resolved"])
        self.journal.log("info", f"Preview: {len(preview.actions)} action(s) of "
                         f"{len(covered)} step(s)"
                         + (f", {unresolved} target(s) not on the page yet" if unresolved
                            else ""), step_id=step.id, category="checkpoint")
        result: dict[str, Any] = self.secrets.deep(preview.as_json())
        return result

    async def _pause_unanswered(self, step: PlanStep, run: _Run, title: str,
                                timeout_seconds: int) -> None:
        """Nobody answered: `paused` with the browser kept for the grace period. A resume
        within it asks the checkpoint again; else PausedOut releases the browser."""
        grace = self.settings.checkpoint_pause_grace_seconds
        await self._commit(
            status="paused", browser={"lastAction": f"Paused: nobody answered '{title}'"},
            says=self.journal.entry(
                "warn", f"Nobody answered the checkpoint '{title}' within {timeout_seconds} s: "
                f"execution paused; the browser is kept for {grace:g} s, then released. "
                "Resume asks again; after the release it continues from the last completed "
                "step", step_id=step.id, category="checkpoint"))
        deadline = asyncio.get_running_loop().time() + grace
        got = await self._await(frozenset({"resume"}), deadline=deadline, step_id=step.id)
        if got is None:
            raise PausedOut(f"Paused at the unanswered checkpoint '{title}'; the browser was "
                            f"released after {grace:g} s. Resume continues from the last "
                            "completed step")
        await self._commit(status="running", browser={"lastAction": f"Resumed: {step.label}"},
                           says=self.journal.entry(
                               "info", f"Resumed by a person; asking again: {title}",
                               step_id=step.id, category="command"))

    # waiting for a person ----------------------------------------------------------------------
    async def _await(self, accept: frozenset[str], *,
                     check: Callable[[], Awaitable[T | None]] | None = None,
                     deadline: float | None = None,
                     takeover: Takeover | None = None,
                     step_id: str | None = None) -> Command | T | None:
        """Wait for an accepted command, `check()` to return something, or the deadline.

        A stop always wins; during a takeover, input commands are applied as they come;
        anything else is refused (marked rejected, with a log line saying why).
        """
        loop = asyncio.get_running_loop()
        while True:
            if self.control.stop_requested:
                raise Stopped()
            if self.control.commands_hint:
                commands = await self.control.fetch()
                for index, command in enumerate(commands):
                    if command.command == "stop":
                        await self._stop_command(command)
                    if takeover is not None and _is_input(command):
                        await self._apply_input(takeover, command, step_id)
                        continue
                    if takeover is not None and command.command == "takeover":
                        await self.control.finish(command, "done")  # already taken over
                        continue
                    if command.command in accept:
                        await self.control.finish(command, "done")
                        if index + 1 < len(commands):
                            self.control.commands_hint = True
                        return command
                    await self._refuse(command)
            if check is not None:
                found = await check()
                if found is not None:
                    return found
            if deadline is not None and loop.time() >= deadline:
                return None
            wait = 1.0 if deadline is None else min(1.0, max(0.0, deadline - loop.time()))
            await self.control.wait(wait)

    async def _stop_command(self, command: Command) -> None:
        await self.control.finish(command, "done")
        self.control.request_stop()
        raise Stopped()

    async def _refuse(self, command: Command) -> None:
        await self.control.finish(command, "rejected")
        self.journal.log("warn", f"Command '{command.command}' ignored: not applicable while "
                         f"the execution is {self.status}", category="command",
                         step_id=command.step_id)

    async def _apply_input(self, takeover: Takeover, command: Command,
                           step_id: str | None) -> None:
        try:
            described = await self.control.unless_stopped(takeover.apply(command.payload))
        except Stopped:
            await self.control.finish(command, "rejected")
            raise
        except InputRefused as exc:
            await self.control.finish(command, "rejected")
            self.journal.log("warn", f"Input refused: {exc.detail}", category="takeover",
                             step_id=step_id)
            return
        except Exception as exc:
            await self.control.finish(command, "rejected")
            self.journal.log("warn", f"Input failed: {type(exc).__name__}: {exc}",
                             category="takeover", step_id=step_id)
            return
        await self.control.finish(command, "done")
        self.browser_state["lastAction"] = f"Manual: {described}"
        self.journal.log("info", f"Manual input: {described}", category="takeover",
                         step_id=step_id)

    async def _between(self, step: PlanStep, run: _Run) -> str | None:
        """Between two actions (and two steps): honour stop, pause and takeover.

        Returns "taken_over" when a person took over and released: the step is then done.
        """
        if self.control.stop_requested:
            raise Stopped()
        if not self.control.commands_hint:
            return None
        outcome: str | None = None
        for command in await self.control.fetch():
            if command.command == "stop":
                await self._stop_command(command)
            elif command.command == "pause":
                await self.control.finish(command, "done")
                outcome = await self._paused(step, run) or outcome
            elif command.command == "takeover" and outcome is None:
                await self.control.finish(command, "done")
                await self._takeover_session(step, run, then="complete", first=command)
                outcome = "taken_over"
            else:
                await self._refuse(command)
        return outcome

    async def _paused(self, step: PlanStep, run: _Run) -> str | None:
        await self._commit(status="paused",
                           browser={"lastAction": f"Paused before continuing {step.label}"},
                           says=self.journal.entry("info", "Paused by a person",
                                                   category="command", step_id=step.id))
        command = await self._await(frozenset({"resume", "takeover"}))
        assert isinstance(command, Command)
        if command.command == "takeover":
            await self._takeover_session(step, run, then="complete", first=command)
            return "taken_over"
        await self._commit(status="running", browser={"lastAction": f"Resumed: {step.label}"},
                           says=self.journal.entry("info", "Resumed by a person",
                                                   category="command", step_id=step.id))
        return None

    # manual takeover ---------------------------------------------------------------------------
    async def _takeover_session(self, step: PlanStep, run: _Run, *, then: str,
                                until: Callable[[], Awaitable[T | None]] | None = None,
                                first: Command | None = None) -> T | None:
        """A person drives the browser until `release` (or until `until()` returns something,
        e.g. the manual step's checkpoint got answered meanwhile; that is returned).

        `first` is the takeover command; the API may carry the first input in it
        (`{"action": "takeover", "input": {...}}`), which is applied at once.

        then="complete": the step is treated as done by the person (completed) and the run
        continues; then="checkpoint": back to waiting on the step's checkpoint.
        """
        assert self.session is not None
        taken = self.journal.entry("info", "Manual takeover: a person controls the browser",
                                   category="takeover", step_id=step.id)
        back_to = self.status
        self.browser_state.update(mode="takeover", lastAction="Manual takeover")
        if then == "complete":
            await self._commit(status="running", step=(step, run.iteration, "running"),
                               current=step.id, error=None, browser=self.browser_state,
                               says=taken)
        else:
            await self._commit(browser=self.browser_state, says=taken)

        async def publish() -> None:
            await self._screenshot(step, run, f"{step.id}-takeover")

        async with Takeover(self.page, self.session.guard, publish,
                            interval=TAKEOVER_SCREENSHOT_SECONDS) as takeover:
            if first is not None and _is_input(first):
                await self._apply_input(takeover, first, step.id)
            got = await self._await(frozenset({"release"}), takeover=takeover,
                                    step_id=step.id, check=until)
        found = None if isinstance(got, Command) else got
        self.browser_state.update(mode="automatic", currentUrl=self.page.url,
                                  lastAction="Released by the person")
        if then == "complete":
            self.done.add((step.id, run.iteration))
            await self._screenshot(step, run, step.id, commit=False)
            await self._commit(status="running", step=(step, run.iteration, "completed"),
                               step_fields={"result": {"completedBy": "person"}},
                               browser=self.browser_state, save_variables=True,
                               says=self.journal.entry(
                                   "info", "Released; step treated as done by the person: "
                                   f"{step.label}", category="takeover", step_id=step.id))
        elif found is None:
            await self._commit(status=back_to if back_to != "cancelling" else None,
                               browser=self.browser_state,
                               says=self.journal.entry(
                                   "info", "Released; waiting for the checkpoint answer",
                                   category="takeover", step_id=step.id))
        else:
            await self._commit(browser=self.browser_state,
                               says=self.journal.entry(
                                   "info", "Takeover ended by the checkpoint answer",
                                   category="takeover", step_id=step.id))
        return found

    # screenshots -------------------------------------------------------------------------------
    async def _screenshot(self, step: PlanStep, run: _Run, name: str, *,
                          commit: bool = True) -> None:
        """Capture, upload, update browser state; an upload failure is a warning only."""
        if self.session is None:
            return
        page = self.page
        self.browser_state["currentUrl"] = page.url
        data = await capture_jpeg(page, secrets=self.secrets.values.values())
        if data is not None:
            try:
                key, url = await self.screenshots.put_async(self.execution_id, name, data)
                self.browser_state.update(screenshot=url, screenshotKey=key)
            except Exception as exc:
                self.journal.log("warn", f"Screenshot upload failed: {type(exc).__name__}",
                                 category="browser", step_id=step.id)
        if commit:
            await self._commit(browser=self.browser_state)

    # tasks -------------------------------------------------------------------------------------
    async def _with_recovery(self, step: PlanStep, run: _Run,
                             fn: Callable[[], T]) -> T | None:
        """Structural work inside a container; a failure asks the person (retry/skip/stop)."""
        while True:
            try:
                return fn()
            except (PlanError, actions.StepError) as exc:
                decision = await self._recover(step, run, exc)
                if decision == "retry":
                    await self._commit(status="running", step=(step, run.iteration, "running"),
                                       step_fields={"new_attempt": True}, error=None)
                    continue
                return None

    async def _run_manual(self, step: PlanStep, run: _Run) -> None:
        spec = step.checkpoint
        answer = await self._ask(
            step, run, "manual", spec.title if spec else f"Manual step: {step.label}",
            (spec.description if spec else None) or step.instruction or step.label,
            spec.timeout_seconds if spec else MANUAL_STEP_TIMEOUT_SECONDS,
            spec.default_action if spec else "reject", manual=True)
        if (step.id, run.iteration) in self.done:  # completed through a takeover
            return
        final = "completed" if answer == "approved" else "skipped"
        self.done.add((step.id, run.iteration))
        await self._commit(status="running", step=(step, run.iteration, final),
                           step_fields={"result": {"completedBy": "person"}}, current=step.id,
                           says=self.journal.entry("info", f"Manual step {final}: {step.label}",
                                                   step_id=step.id))

    async def _run_task(self, step: PlanStep, run: _Run) -> None:
        auto_retries = 0
        attempt = 0
        policy = step.recovery or run.recovery
        tries = _Tries()
        while True:
            attempt += 1
            self.browser_state["lastAction"] = f"Running: {step.label}"
            await self._commit(status="running", step=(step, run.iteration, "running"),
                               step_fields={"new_attempt": True}, current=step.id, error=None,
                               browser=self.browser_state,
                               says=self.journal.entry(
                                   "info", f"Step started: {step.label}"
                                   + (f" (attempt {attempt})" if attempt > 1 else ""),
                                   step_id=step.id))
            try:
                outcome = await self._perform_step(step, run, attempt)
            except (Stopped, Rejected, EndOfPlan, LeaseLost):
                raise
            except Exception as exc:  # StepError, TransientError, NeedsHuman, Blocked, ...
                if policy is not None:
                    decision = await self._by_policy(step, run, exc, policy, tries)
                elif (isinstance(exc, actions.TransientError) and self.config.auto_retry_enabled
                      and auto_retries < self.settings.max_auto_retries):
                    auto_retries += 1
                    decision = await self._recover(step, run, exc, auto_retry=auto_retries)
                else:
                    decision = await self._recover(step, run, exc)
            else:
                if outcome != "taken_over":
                    await self._complete_task(step, run, outcome)
                return
            if decision != "retry":
                return

    async def _complete_task(self, step: PlanStep, run: _Run,
                             outcome: StepOutcome | str) -> None:
        result: dict[str, Any] = {}
        locator = None
        if isinstance(outcome, StepOutcome):
            if outcome.variables:
                result["variables"] = outcome.variables
            if outcome.resolutions:
                locator = {"actions": outcome.resolutions}
                self._locators[step.id] = locator
        self.done.add((step.id, run.iteration))
        self.browser_state["lastAction"] = f"Completed: {step.label}"
        await self._screenshot(step, run, step.id, commit=False)
        self._progress = max(self._progress, self._step_end)  # the completion shows its share
        # the line goes with the write: if the write is abandoned, the log must not say so
        await self._commit(status="running", step=(step, run.iteration, "completed"),
                           step_fields={"result": result or None, "locator": locator},
                           browser=self.browser_state, save_variables=True,
                           says=self.journal.entry("info", f"Step completed: {step.label}",
                                                   step_id=step.id))

    async def _by_policy(self, step: PlanStep, run: _Run, exc: BaseException,
                         policy: RecoveryPolicy, tries: _Tries) -> str:
        """The step's error handler (its own or the innermost enclosing one) decides:
        retries with its backoff, then `onFailure` (aef.models.RecoveryPolicy). Returns
        retry | skip | done like `_recover`, or raises NextItem / StoppedByPolicy."""
        message = self._describe(exc)
        if policy.retries is not None and tries.retries < policy.retries:
            tries.retries += 1
            backoff = policy.backoff_ms
            delay = (backoff[min(tries.retries, len(backoff)) - 1] / 1000 if backoff
                     else self.settings.auto_retry_delay_seconds)
            self.journal.log("warn", f"{message} — retrying in {delay:g} s (error handler: "
                             f"retry {tries.retries} of {policy.retries})", step_id=step.id,
                             category="error")
            loop = asyncio.get_running_loop()
            await self._await(frozenset(), deadline=loop.time() + delay, step_id=step.id)
            return "retry"
        action = policy.on_failure or "escalate"
        if action == "fallback" and not tries.fallback_done:
            tries.fallback_done = True
            self.journal.log("warn", f"{message} — running the error handler's fallback, then "
                             "the step once more", step_id=step.id, category="error")
            try:
                for fallback in policy.actions:
                    result = await self._perform(fallback, run, None, 1)
                    self.journal.log("info", f"Fallback: {result.description}",
                                     step_id=step.id, category="action")
            except (Stopped, LeaseLost):
                raise
            except Exception as fallback_exc:
                return await self._recover(step, run, fallback_exc, hint=policy.instruction)
            return "retry"
        if action in ("skip", "next_item"):
            what = ("Step skipped" if action == "skip" or run.iteration == 0
                    else "Step skipped with the rest of this item")
            self.done.add((step.id, run.iteration))
            await self._commit(status="running", step=(step, run.iteration, "skipped"),
                               step_fields={"error": message}, error=None,
                               says=self.journal.entry(
                                   "warn", f"{what} by its error handler: {message}",
                                   step_id=step.id, category="error"))
            if action == "next_item" and run.iteration != 0:
                raise NextItem("abandoned by its error handler")
            return "skip"
        if action == "stop":
            raise StoppedByPolicy(f"Step {step.label!r} failed and its error handler stops the "
                                  f"execution: {message}")
        return await self._recover(step, run, exc, hint=policy.instruction)

    async def _recover(self, step: PlanStep, run: _Run, exc: BaseException, *,
                       auto_retry: int = 0, hint: str | None = None) -> str:
        """Hard error (or an announced auto-retry): ask the person; returns retry | skip | done.
        `hint`: what the step's error handler tells the person to do."""
        message = self._describe(exc)
        if hint:
            message = f"{message}. {self.secrets.text(hint)}"[:2000]
        delay = self.settings.auto_retry_delay_seconds if auto_retry else None
        error: dict[str, Any] = {"message": message, "recovery_options": list(RECOVERY_OPTIONS),
                                 "stepId": step.id, "iteration": run.iteration}
        if delay is not None:
            error["auto_retry_in"] = max(1, math.ceil(delay)) if delay > 0 else 0
            self.journal.log("warn", f"{message} — retrying automatically in {delay:g} s "
                             f"(attempt {auto_retry} of {self.settings.max_auto_retries})",
                             step_id=step.id, category="error")
        else:
            self.journal.log("error", message, step_id=step.id, category="error")
        self.browser_state["lastAction"] = f"Failed: {step.label}"
        await self._screenshot(step, run, f"{step.id}-error", commit=False)
        await self._commit(event="error", status="waiting_recovery",
                           step=(step, run.iteration, "failed"),
                           step_fields={"error": message}, current=step.id, error=error,
                           browser=self.browser_state)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay if delay is not None else None
        while True:
            got = await self._await(frozenset({"retry", "skip", "takeover", "run_step"}),
                                    deadline=deadline, step_id=step.id)
            if got is None:
                self.journal.log("info", "Retrying automatically", step_id=step.id,
                                 category="error")
                return "retry"
            assert isinstance(got, Command)
            if got.command == "run_step" and got.step_id not in (None, step.id):
                self.journal.log("warn", f"Cannot run {got.step_id} while {step.id} waits for "
                                 "recovery; retry, skip, take over or stop", step_id=step.id,
                                 category="command")
                continue
            if got.command in ("retry", "run_step"):
                self.journal.log("info", "Retry requested by a person", step_id=step.id,
                                 category="command")
                return "retry"
            if got.command == "skip":
                self.done.add((step.id, run.iteration))
                await self._commit(status="running", step=(step, run.iteration, "skipped"),
                                   error=None, says=self.journal.entry(
                                       "info", f"Step skipped by a person: {step.label}",
                                       step_id=step.id, category="command"))
                return "skip"
            await self._takeover_session(step, run, then="complete", first=got)
            return "done"

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, AefError):
            text = exc.detail
        return self.secrets.text(text)[:2000]

    # actions -----------------------------------------------------------------------------------
    async def _perform_step(self, step: PlanStep, run: _Run,
                            attempt: int) -> StepOutcome | str:
        """The step's actions in order, honouring stop/pause/takeover between two of them."""
        if step.method == "resolver" and step.compute is not None:
            return await self._compute(step, step.compute, run)
        todo = list(step.actions)
        if not todo and step.instruction:
            todo = [Action(type="act", instruction=step.instruction)]
        if not todo:
            raise actions.StepError(f"Step {step.label!r} has no actions and no instruction")
        outcome = StepOutcome()
        cached = await self._cached_locator(step)
        for index, action in enumerate(todo):
            if await self._between(step, run) == "taken_over":
                return "taken_over"
            self.browser_state["lastAction"] = describe_action(action)
            hint = cached.get(str(index)) if cached else None
            result = await self._perform(action, run, hint, attempt)
            self.browser_state.update(lastAction=result.description, currentUrl=result.url)
            details: dict[str, Any] = {"type": result.type, "durationMs": result.duration_ms}
            match = (result.resolution or {}).get("match")
            if match:  # the element grounding chose and why, to audit the act afterwards
                details["element"] = match
            self.journal.log("info", result.description + match_summary(match),
                             step_id=step.id, category="action", details=details)
            if result.resolution is not None:
                outcome.resolutions[str(index)] = result.resolution
            if result.variable:
                self.variables[result.variable] = result.value
                outcome.variables[result.variable] = result.value
        if await self._between(step, run) == "taken_over":
            return "taken_over"
        return outcome

    async def _compute(self, step: PlanStep, spec: ComputeSpec, run: _Run) -> StepOutcome:
        """A data step (a workflow's data_transform, generator, llm_call, filter): the
        configured resolver's `compute(spec, data, page)` produces the value of `spec.output`.
        Without such a resolver the step fails into the normal recovery: a person does it by
        taking over, or skips it; never a silent drop. Secrets are never handed over."""
        computer = compute_resolver(self.resolver)
        if computer is None:
            raise actions.StepError(
                f"No configured resolver can compute {spec.output!r} ({spec.operation}: "
                f"{spec.instruction}); take over to do it by hand, or skip")
        try:
            data = (lookup(spec.input, run.scope, self.variables) if spec.input
                    else {**self.variables, **run.scope})
        except KeyError:
            raise actions.StepError(f"The input {spec.input!r} of this step is not set") \
                from None
        value = await self.control.unless_stopped(computer.compute(spec, data, self.page))
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise actions.StepError(f"The resolver's value for {spec.output!r} is not JSON") \
                from None
        self.variables[spec.output] = value
        self.journal.log("info", f"Computed {spec.output} ({spec.operation})", step_id=step.id,
                         category="compute")
        return StepOutcome(variables={spec.output: value})

    async def _cached_locator(self, step: PlanStep) -> dict[str, Any] | None:
        """Resolutions of this step's `act` actions from an earlier completed run."""
        if not any(a.type == "act" for a in step.actions) and (step.actions
                                                               or not step.instruction):
            return None
        if step.id not in self._locators:
            found = await self._query(
                lambda c: store.cached_locator(c, self.execution_id, step.id))
            if found is None:
                return None
            self._locators[step.id] = found
        return dict(self._locators[step.id].get("actions") or {})

    async def _perform(self, action: Action, run: _Run, cached: dict[str, Any] | None,
                       attempt: int) -> actions.ActionResult:
        """One action through runner.actions (which substitutes {{placeholders}}: variables
        with the loop item first, then secrets) with an outer bound against a hung page."""
        assert self.session is not None
        ctx = actions.ActionContext(
            settings=self.settings,
            session=self.session,
            variables={**self.variables, **run.scope},
            secrets=self.secrets.values,
            resolver=self.resolver,
            cached=cached,
            attempt=attempt,
            default_timeout_ms=self.config.step_timeout * 1000,
            log=lambda level, message: self.journal.log(level, message, category="grounding"),
        )
        bound = self.config.step_timeout + (action.timeout_ms or 0) / 1000 + 30
        try:
            async with asyncio.timeout(bound):
                return await self.control.unless_stopped(
                    actions.perform(self.page, action, ctx))
        except TimeoutError:
            raise actions.TransientError(
                f"{action.type} did not finish within {bound:.0f} s") from None

    # the end -----------------------------------------------------------------------------------
    async def _finish(self, outcome: Outcome) -> None:
        """Write the final state after the browser is closed."""
        if outcome.status == "lost":
            log.error("stopping without a final write: %s", outcome.message)
            return
        if outcome.status == "handed_back":
            await self._hand_back(outcome)
            return
        self.browser_state.update(isReady=False, mode="closed")
        try:
            if outcome.status == "completed":
                await self._write_completed(outcome)
            elif outcome.status == "cancelled":
                await self._write_cancelled(outcome)
            elif outcome.status == "paused":
                await self._write_released(outcome)
            else:
                await self._write_failed(outcome)
        except Stopped:  # a stop raced the final write (the row is `cancelling`)
            await self._write_cancelled(Outcome("cancelled", "Execution stopped on request"))
        except LeaseLost as exc:
            log.error("no final write: %s", exc.detail)

    async def _write_completed(self, outcome: Outcome) -> None:
        self._progress = 1.0
        await self._commit(event="execution_complete", status="completed", current=None,
                           browser={**self.browser_state, "lastAction": "Completed"},
                           error=None, save_variables=True,
                           says=self.journal.entry("info", outcome.message))

    async def _write_cancelled(self, outcome: Outcome) -> None:
        """cancelling -> cancelled (via cancelling when the stop came as a command or a
        rejection); if the API already forced `cancelled`, only the log line is added."""
        said = self.journal.entry("warn" if outcome.error else "info", outcome.message)
        message = self.secrets.text(outcome.message)
        browser = self.secrets.deep({**self.browser_state, "lastAction": "Cancelled"})
        progress = self._percent()

        def cancel(conn: Connection) -> str:
            """Returns the event type: nothing new to announce if the API already ended it."""
            row = store.get_execution(conn, self.execution_id)
            if row is None:
                raise LeaseLost("the execution row is not visible any more")
            status = str(row["status"])
            store.cancel_open_steps(conn, self.execution_id, message)
            store.close_pending_checkpoints(conn, self.execution_id, "execution_cancelled")
            if status == "cancelled":
                return "execution_update"
            if status not in ("cancelling", "waiting_checkpoint"):
                store.update_execution(conn, self.execution_id, status="cancelling")
            store.update_execution(conn, self.execution_id, status="cancelled",
                                   progress=progress, browser=browser)
            return "execution_complete"

        await self.journal.commit(cancel, event=lambda kind: kind, says=(said,))
        self._saw_status("cancelled")

    async def _hand_back(self, outcome: Outcome) -> None:
        """Say so; its steps stay as they are, and the lease ends once the heartbeat stopped
        (`run`), so the sweeper resumes it."""
        await self._commit(browser={**self.browser_state, "lastAction": "Handed back"},
                           says=self.journal.entry(
                               "warn", f"{outcome.message}: the execution is handed back and "
                               "resumes from its last completed step"))

    async def _write_released(self, outcome: Outcome) -> None:
        """The execution stays `paused` without a browser; a resume starts a new runner that
        continues from the last completed step (offered in `error.recovery_options`, so a
        client shows the button)."""
        error = {"message": outcome.message, "recovery_options": list(RESUME_OPTIONS)}
        await self._commit(browser={**self.browser_state, "mode": "released",
                                    "lastAction": "Paused; browser released"}, error=error,
                           says=self.journal.entry("warn", outcome.message,
                                                   category="checkpoint"))

    async def _write_failed(self, outcome: Outcome) -> None:
        error = {"message": outcome.message, "recovery_options": list(RESUME_OPTIONS)}
        message = self.secrets.text(outcome.message)

        def fail(conn: Connection) -> None:
            store.fail_open_steps(conn, self.execution_id, message)

        await self._commit(event="execution_complete", status="failed", error=error,
                           browser={**self.browser_state, "lastAction": "Failed"}, extra=fail,
                           says=self.journal.entry("error", outcome.message))


def compute_resolver(resolver: Any) -> Any | None:
    """The configured resolver (AEF_LLM_RESOLVER) if it can compute data steps: it has an
    async `compute(spec: ComputeSpec, data, page)` returning a JSON value."""
    for candidate in getattr(resolver, "resolvers", None) or [resolver]:
        if callable(getattr(candidate, "compute", None)):
            return candidate
    return None


@dataclass
class StepOutcome:
    """What a task step produced: extracted variables and resolved locators."""

    variables: dict[str, Any] = field(default_factory=dict)
    resolutions: dict[str, Any] = field(default_factory=dict)


def _all_ids(steps: list[PlanStep]) -> Iterator[str]:
    for step in steps:
        yield step.id
        yield from _all_ids(step.children)
        if step.decision is not None:
            yield from _all_ids(step.decision.yes)
            yield from _all_ids(step.decision.no)


def _is_input(command: Command) -> bool:
    """`input`, or `takeover` carrying an input payload (how the API's ActionRequest sends it)."""
    return command.command == "input" or (command.command == "takeover"
                                          and bool(command.payload.get("kind")))


def checkpoint_choices(checkpoint_type: str, step: PlanStep, run: _Run,
                       covered: list[PlanStep]) -> list[dict[str, str]]:
    """The answers valid at this checkpoint and what each does (docs/architecture.md,
    "Checkpoint choices")."""
    stop = {"response": "reject", "label": "Reject",
            "meaning": "Stop the whole execution (cancelled); nothing after this runs"}
    if checkpoint_type == "decision" and step.decision is not None:
        yes = step.decision.yes[0].label if step.decision.yes else "continue"
        no = step.decision.no[0].label if step.decision.no else "continue"
        return [{"response": "approve", "label": "Yes", "meaning": f"Take the yes branch ({yes})"},
                {"response": "reject", "label": "No", "meaning": f"Take the no branch ({no})"},
                {"response": "skip", "label": "Skip",
                 "meaning": "Run neither branch and go on after the decision"}]
    if checkpoint_type == "manual":
        return [{"response": "approve", "label": "Done",
                 "meaning": "The step was done by hand; go on"},
                {"response": "skip", "label": "Skip", "meaning": "Skip this step and go on"},
                stop]
    others = [c.label for c in covered if c.id != step.id]
    run_it = "Run this step" + (f" and the {len(others)} step(s) it covers ("
                                f"{'; '.join(others)})" if others else "")
    if run.iteration:
        skip = ("Skip this step for this item (and the steps it covers); the loop goes on "
                "with the next item")
    else:
        skip = "Skip this step" + (" and the steps it covers" if others else "") + " and go on"
    return [{"response": "approve", "label": "Approve", "meaning": run_it},
            {"response": "skip", "label": "Skip", "meaning": skip},
            stop]


def describe_action(action: Action) -> str:
    """A short human description from the *template* (placeholders, never secret values)."""
    target = action.selector or action.url or action.instruction or action.key or ""
    text = f"{action.type} {target}".strip()
    return text if len(text) <= 200 else text[:197] + "..."


async def run_execution(settings: Settings, execution_id: str, runner_token: str, *,
                        db: Database | None = None, screenshots: ScreenshotStore | None = None,
                        runner_id: str | None = None) -> Outcome:
    """The runner's main: one execution from claim to final state."""
    engine = Engine(settings, db or get_database(), execution_id, runner_token,
                    screenshots=screenshots, runner_id=runner_id)
    return await engine.run()


def exit_code(outcome: Outcome) -> int:
    """0 completed, cancelled or paused, 1 failed, 2 not claimed / lease lost."""
    return {"completed": 0, "cancelled": 0, "paused": 0, "failed": 1}.get(outcome.status, 2)
