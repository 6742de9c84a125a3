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
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypedDict, TypeVar

from pydantic import ValidationError

from aef import rules
from aef.db import Connection, Database, get_database
from aef.errors import AefError
from aef.models import Action, AefConfig, ComputeSpec, PlanStep, RecoveryPolicy
from aef.plan import all_ids, contains, nested, selected_within
from aef.settings import Settings
from aef.storage import ScreenshotStore
from aef.store import runner as store
from runner import actions
from runner.browser import BrowserSession, capture_jpeg, open_browser
from runner.control import Command, Control, Stopped, listen_url
from runner.flow import (
    DEFAULT_ANSWER,
    AfterTakeover,
    Answer,
    Between,
    EndOfPlan,
    NextItem,
    Outcome,
    OutcomeStatus,
    PausedOut,
    PlanError,
    Recovery,
    Rejected,
    StoppedByPolicy,
)
from runner.grounding import build_resolver, match_summary
from runner.journal import Journal
from runner.lease import Lease, LeaseLost, NotClaimable
from runner.preview import build_preview, covered_steps, outlined_screenshot
from runner.retry import retry_unavailable
from runner.takeover import InputRefused, Takeover

log = logging.getLogger("aef.runner")

T = TypeVar("T")

LOOP_STRIDE: Final = 10_000
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


# --- redaction --------------------------------------------------------------------------------
class Secrets:
    """The execution's secret values and a deep redactor for everything written out."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self._redactor = actions.Redactor(self.values)

    def text(self, value: str) -> str:
        return self._redactor.redact(value)

    def deep(self, value: Any) -> Any:
        """Strings anywhere in a JSON-like value, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value


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


class ExecutionChange(TypedDict, total=False):
    """What a write changes on the execution row: a key left out is left alone (None is SQL
    null); the progress is always written."""

    status: str
    current_step_id: str | None
    browser: Mapping[str, Any]
    error: Mapping[str, Any] | None
    variables: Mapping[str, Any]


@dataclass(frozen=True)
class StepChange:
    """A step row moved to `status` in the same write (`new_attempt`: `running` counts an
    attempt and stamps started_at)."""

    step: PlanStep
    iteration: int
    status: str
    new_attempt: bool = False
    result: Mapping[str, Any] | None = None
    locator: Mapping[str, Any] | None = None
    error: str | None = None


def _nothing(conn: Connection) -> None:
    """No extra statement in a write."""


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
            return Outcome(OutcomeStatus.LOST, exc.detail)
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
        if outcome.status == OutcomeStatus.PAUSED:  # after the heartbeat stopped (it renews)
            await self._release_lease()
        elif outcome.status == OutcomeStatus.HANDED_BACK:  # likewise; the sweeper takes over
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
            return Outcome(OutcomeStatus.FAILED,
                           f"The execution exceeded its time limit of {limit} s")
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
            return Outcome(OutcomeStatus.FAILED, f"The document cannot be run: {exc}")
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
                return Outcome(OutcomeStatus.LOST, "Another runner holds this execution")
            if self._handed_back is not None and self.status != "cancelling":
                return Outcome(OutcomeStatus.HANDED_BACK, self._handed_back)
            if self._terminated is not None and self.status != "cancelling":
                return Outcome(OutcomeStatus.FAILED, self._terminated)
            return Outcome(OutcomeStatus.CANCELLED, "Execution stopped on request")
        except PausedOut as exc:
            return Outcome(OutcomeStatus.PAUSED, str(exc))
        except Rejected as exc:
            how = "expired (default: reject)" if exc.expired else "was rejected"
            return Outcome(OutcomeStatus.CANCELLED,
                           f"Checkpoint '{exc.title}' {how}; execution cancelled",
                           {"stepId": exc.step_id, "iteration": exc.iteration})
        except LeaseLost:
            return Outcome(OutcomeStatus.LOST, "Another runner holds this execution")
        except StoppedByPolicy as exc:
            return Outcome(OutcomeStatus.FAILED, str(exc))
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                raise
            trace = "".join(traceback.format_exception(exc))
            log.error("execution failed\n%s", self.secrets.text(trace))
            return Outcome(OutcomeStatus.FAILED, f"The runner failed: {type(exc).__name__}: {exc}")

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
        known = set(all_ids(self.plan))
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
        await self._write({"status": "running", "browser": self.browser_state,
                           "current_step_id": None},
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
        return Outcome(OutcomeStatus.COMPLETED, "Execution completed")

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
    # Every state change goes through `_write_with`: logs, an optional step row, the execution
    # row and the event, in one transaction. The named operations below are what the engine
    # does with it; `says` (from `journal.entry`) is the line describing the change, written
    # only with it, never on its own (see Journal).
    async def _write_with(self, extra: Callable[[Connection], T], change: ExecutionChange,
                          step: StepChange | None = None, *, event: str = "execution_update",
                          says: store.LogRecord | None = None) -> T:
        """One transaction: `extra` first (its result is returned), then the step row, then the
        execution row (redacted, with the current progress), then the event."""
        patch: dict[str, Any] = dict(change)
        for key in ("browser", "error", "variables"):
            if patch.get(key) is not None:
                patch[key] = self.secrets.deep(dict(patch[key]))
        progress = self._percent()
        extra_result: list[T] = []

        def write(conn: Connection) -> dict[str, Any]:
            extra_result.append(extra(conn))
            if step is not None:
                store.upsert_step(
                    conn, self.execution_id, step.step.id, step.iteration, step.status,
                    label=step.step.label, new_attempt=step.new_attempt,
                    error=self.secrets.text(step.error) if step.error is not None else None,
                    result=self._redacted(step.result), locator=self._redacted(step.locator))
            row = store.update_execution(conn, self.execution_id, progress=progress, **patch)
            if row is None:
                raise LeaseLost("the execution row is not visible any more")
            return row  # the journal reads the status from it

        try:
            await self.journal.commit(write, event=event,
                                      says=(says,) if says is not None else ())
            return extra_result[-1]
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

    async def _write(self, change: ExecutionChange, step: StepChange | None = None, *,
                     event: str = "execution_update",
                     says: store.LogRecord | None = None) -> None:
        await self._write_with(_nothing, change, step, event=event, says=says)

    def _redacted(self, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return self.secrets.deep(dict(value)) if value is not None else None

    async def _start_step(self, step: PlanStep, run: _Run, *,
                          browser: Mapping[str, Any] | None = None,
                          result: Mapping[str, Any] | None = None, new_attempt: bool = True,
                          says: store.LogRecord | None = None) -> None:
        """The step row `running` (a new attempt unless a person takes over a running step);
        it becomes the current step and any earlier error is cleared."""
        change: ExecutionChange = {"status": "running", "current_step_id": step.id,
                                   "error": None}
        if browser is not None:
            change["browser"] = browser
        await self._write(change, StepChange(step, run.iteration, "running",
                                             new_attempt=new_attempt, result=result),
                          says=says)

    async def _complete_step(self, step: PlanStep, run: _Run, says: store.LogRecord, *,
                             browser: Mapping[str, Any], result: Mapping[str, Any] | None,
                             locator: Mapping[str, Any] | None = None) -> None:
        """A task done (by the runner or a person): `completed`, with the variables."""
        await self._write({"status": "running", "browser": browser,
                           "variables": self.variables},
                          StepChange(step, run.iteration, "completed", result=result,
                                     locator=locator), says=says)

    async def _finish_step(self, step: PlanStep, run: _Run, status: str,
                           says: store.LogRecord, *,
                           result: Mapping[str, Any] | None = None) -> None:
        """A step that ends where it is (an `end`, a manual step): `completed` or `skipped`,
        and it becomes the current step."""
        await self._write({"status": "running", "current_step_id": step.id},
                          StepChange(step, run.iteration, status, result=result), says=says)

    async def _skip_step(self, step: PlanStep, run: _Run, says: store.LogRecord, *,
                         error: str | None = None, clear_error: bool = False) -> None:
        """The step row `skipped` (`error`: why, on the row); `clear_error` after a failure."""
        change: ExecutionChange = {"status": "running"}
        if clear_error:
            change["error"] = None
        await self._write(change, StepChange(step, run.iteration, "skipped", error=error),
                          says=says)

    async def _fail_step(self, step: PlanStep, run: _Run, message: str,
                         error: Mapping[str, Any]) -> None:
        """The step row `failed`, the execution `waiting_recovery` with `error` (the options)."""
        await self._write({"status": "waiting_recovery", "current_step_id": step.id,
                           "error": error, "browser": self.browser_state},
                          StepChange(step, run.iteration, "failed", error=message),
                          event="error")

    async def _set_status(self, status: str, browser: Mapping[str, Any],
                          says: store.LogRecord) -> None:
        """The execution's status changes (paused, running again), nothing else."""
        await self._write({"status": status, "browser": browser}, says=says)

    async def _show(self, browser: Mapping[str, Any],
                    says: store.LogRecord | None = None) -> None:
        """Only the browser state changes (a screenshot, a takeover starting or ending)."""
        await self._write({"browser": browser}, says=says)

    # the tree ----------------------------------------------------------------------------------
    async def _visit(self, step: PlanStep, run: _Run, weight: float) -> None:
        """Run `step` unless a resume, a step selection or resume_from says otherwise."""
        start = self._progress
        if self.step_ids is not None and step.id not in self.step_ids:
            if not selected_within(step, self.step_ids):
                return
            for child in nested(step):  # only the selected steps below run; their own weight counts
                await self._visit(child, run, 0.0)
            return
        if self.step_ids is not None:
            weight = self._unit
        if self.resume_target is not None:
            if step.id == self.resume_target:
                self.resume_target = None
            elif not contains(step, self.resume_target):
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
            await self._skip_step(step, run, self.journal.entry(
                                   "info", f"Step skipped with the unit its checkpoint covered: "
                                   f"{step.label}", step_id=step.id, category="checkpoint"))
            self._progress = start + weight
            return
        if step.id in self.preskip:
            self.preskip.discard(step.id)
            self.done.add((step.id, run.iteration))
            await self._skip_step(step, run, self.journal.entry(
                                   "info", f"Step skipped as requested: {step.label}",
                                   step_id=step.id, category="command"))
            self._progress = start + weight
            return
        if await self._between(step, run) != Between.TAKEN_OVER:  # else a person did this step
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
            if answer == Answer.SKIPPED:
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
            await self._finish_step(step, run, "completed", self.journal.entry(
                "info", f"Reached the end: {step.label}", step_id=step.id))
            raise EndOfPlan()
        elif step.kind == "manual" or step.method == "manual":
            await self._run_manual(step, run)
        else:
            await self._run_task(step, run)

    async def _skip_unit(self, step: PlanStep, run: _Run, covered: list[PlanStep]) -> None:
        """Skip at a before_step checkpoint: the step and every step it covers; inside a loop
        the rest of this item too (NextItem), outside one the run goes on after the unit."""
        self.done.add((step.id, run.iteration))
        await self._skip_step(step, run, self.journal.entry(
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
        await self._start_step(step, run, says=self.journal.entry(
            "info", f"{what} started: {step.label}", step_id=step.id))

    async def _finish_container(self, step: PlanStep, run: _Run,
                                result: Mapping[str, Any] | None = None, *,
                                says: store.LogRecord | None = None) -> None:
        self.done.add((step.id, run.iteration))
        await self._write({"variables": self.variables},
                          StepChange(step, run.iteration, "completed", result=result or None),
                          says=says)

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

        skipped = await self._write_with(skip, {"status": "running"}, says=self.journal.entry(
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
            if answer == Answer.SKIPPED:
                await self._skip_step(step, run, self.journal.entry(
                    "info", f"Decision skipped: {step.label}", step_id=step.id))
                return
            branch = "yes" if answer == Answer.APPROVED else "no"
            self.journal.log("info", f"Decision '{decision.question}': {branch} (answered by "
                             "a person)", step_id=step.id, category="decision")
        self.results[key] = {"branch": branch}
        await self._start_step(step, run, result={"branch": branch})
        steps = decision.yes if branch == "yes" else decision.no
        share = weight / max(1, len(steps))
        for branch_step in steps:
            await self._visit(branch_step, run, share)
        await self._finish_container(step, run, {"branch": branch})

    # checkpoints -------------------------------------------------------------------------------
    async def _ask(self, step: PlanStep, run: _Run, checkpoint_type: str, title: str,
                   description: str | None, timeout_seconds: int, default_action: str, *,
                   decision: bool = False, manual: bool = False,
                   covered: list[PlanStep] | None = None) -> Answer:
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
            expired = row["status"] == "expired"
            if expired:
                answer = DEFAULT_ANSWER[str(row["default_action"])]
                self.journal.log("warn", f"Checkpoint expired; default action: "
                                 f"{row['default_action']}", step_id=step.id,
                                 category="checkpoint")
            else:
                answer = Answer(str(row["status"]))
                self.journal.log("info", f"Checkpoint {answer}: {title}", step_id=step.id,
                                 category="checkpoint")
            if answer == Answer.PAUSED:
                await self._pause_unanswered(step, run, title, timeout_seconds)
                continue
            if answer == Answer.REJECTED and not decision:
                raise Rejected(step.id, run.iteration, title, expired)
            return answer

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

        checkpoint = await self._write_with(
            insert, {"status": "waiting_checkpoint", "current_step_id": step.id,
                     "browser": {"lastAction": f"Waiting for approval: {title}"}},
            StepChange(step, run.iteration, "waiting_checkpoint"), event="checkpoint_required",
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
                row = await self._takeover_session(step, run, then=AfterTakeover.CHECKPOINT,
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
        await self._set_status(
            "paused", {"lastAction": f"Paused: nobody answered '{title}'"}, self.journal.entry(
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
        await self._set_status("running", {"lastAction": f"Resumed: {step.label}"},
                               self.journal.entry(
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

    async def _between(self, step: PlanStep, run: _Run) -> Between | None:
        """Between two actions (and two steps): honour stop, pause and takeover.

        Returns TAKEN_OVER when a person took over and released: the step is then done.
        """
        if self.control.stop_requested:
            raise Stopped()
        if not self.control.commands_hint:
            return None
        outcome: Between | None = None
        for command in await self.control.fetch():
            if command.command == "stop":
                await self._stop_command(command)
            elif command.command == "pause":
                await self.control.finish(command, "done")
                outcome = await self._paused(step, run) or outcome
            elif command.command == "takeover" and outcome is None:
                await self.control.finish(command, "done")
                await self._takeover_session(step, run, then=AfterTakeover.COMPLETE, first=command)
                outcome = Between.TAKEN_OVER
            else:
                await self._refuse(command)
        return outcome

    async def _paused(self, step: PlanStep, run: _Run) -> Between | None:
        await self._set_status("paused",
                               {"lastAction": f"Paused before continuing {step.label}"},
                               self.journal.entry("info", "Paused by a person",
                                                   category="command", step_id=step.id))
        command = await self._await(frozenset({"resume", "takeover"}))
        assert isinstance(command, Command)
        if command.command == "takeover":
            await self._takeover_session(step, run, then=AfterTakeover.COMPLETE, first=command)
            return Between.TAKEN_OVER
        await self._set_status("running", {"lastAction": f"Resumed: {step.label}"},
                               self.journal.entry("info", "Resumed by a person",
                                                   category="command", step_id=step.id))
        return None

    # manual takeover ---------------------------------------------------------------------------
    async def _takeover_session(self, step: PlanStep, run: _Run, *, then: AfterTakeover,
                                until: Callable[[], Awaitable[T | None]] | None = None,
                                first: Command | None = None) -> T | None:
        """A person drives the browser until `release` (or until `until()` returns something,
        e.g. the manual step's checkpoint got answered meanwhile; that is returned).

        `first` is the takeover command; the API may carry the first input in it
        (`{"action": "takeover", "input": {...}}`), which is applied at once.

        `then` (AfterTakeover): COMPLETE, the step is treated as done by the person (completed)
        and the run goes on; CHECKPOINT, back to waiting on the step's checkpoint.
        """
        assert self.session is not None
        taken = self.journal.entry("info", "Manual takeover: a person controls the browser",
                                   category="takeover", step_id=step.id)
        back_to = self.status
        self.browser_state.update(mode="takeover", lastAction="Manual takeover")
        if then == AfterTakeover.COMPLETE:
            await self._start_step(step, run, browser=self.browser_state, new_attempt=False,
                                   says=taken)
        else:
            await self._show(self.browser_state, taken)

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
        if then == AfterTakeover.COMPLETE:
            self.done.add((step.id, run.iteration))
            await self._screenshot(step, run, step.id, commit=False)
            await self._complete_step(step, run, self.journal.entry(
                "info", f"Released; step treated as done by the person: {step.label}",
                category="takeover", step_id=step.id), browser=self.browser_state,
                result={"completedBy": "person"})
        elif found is None:
            released = self.journal.entry("info", "Released; waiting for the checkpoint answer",
                                          category="takeover", step_id=step.id)
            if back_to != "cancelling":
                await self._set_status(back_to, self.browser_state, released)
            else:
                await self._show(self.browser_state, released)
        else:
            await self._show(self.browser_state, self.journal.entry(
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
            await self._show(self.browser_state)

    # tasks -------------------------------------------------------------------------------------
    async def _with_recovery(self, step: PlanStep, run: _Run,
                             fn: Callable[[], T]) -> T | None:
        """Structural work inside a container; a failure asks the person (retry/skip/stop)."""
        while True:
            try:
                return fn()
            except (PlanError, actions.StepError) as exc:
                decision = await self._recover(step, run, exc)
                if decision == Recovery.RETRY:
                    await self._start_step(step, run)
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
        final = "completed" if answer == Answer.APPROVED else "skipped"
        self.done.add((step.id, run.iteration))
        await self._finish_step(step, run, final, self.journal.entry(
            "info", f"Manual step {final}: {step.label}", step_id=step.id),
            result={"completedBy": "person"})

    async def _run_task(self, step: PlanStep, run: _Run) -> None:
        auto_retries = 0
        attempt = 0
        policy = step.recovery or run.recovery
        tries = _Tries()
        while True:
            attempt += 1
            self.browser_state["lastAction"] = f"Running: {step.label}"
            await self._start_step(step, run, browser=self.browser_state,
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
                if outcome != Between.TAKEN_OVER:
                    await self._complete_task(step, run, outcome)
                return
            if decision != Recovery.RETRY:
                return

    async def _complete_task(self, step: PlanStep, run: _Run,
                             outcome: StepOutcome | Between) -> None:
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
        await self._complete_step(step, run, self.journal.entry(
            "info", f"Step completed: {step.label}", step_id=step.id),
            browser=self.browser_state, result=result or None, locator=locator)

    async def _by_policy(self, step: PlanStep, run: _Run, exc: BaseException,
                         policy: RecoveryPolicy, tries: _Tries) -> Recovery:
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
            return Recovery.RETRY
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
            return Recovery.RETRY
        if action in ("skip", "next_item"):
            what = ("Step skipped" if action == "skip" or run.iteration == 0
                    else "Step skipped with the rest of this item")
            self.done.add((step.id, run.iteration))
            await self._skip_step(step, run, self.journal.entry(
                "warn", f"{what} by its error handler: {message}", step_id=step.id,
                category="error"), error=message, clear_error=True)
            if action == "next_item" and run.iteration != 0:
                raise NextItem("abandoned by its error handler")
            return Recovery.SKIP
        if action == "stop":
            raise StoppedByPolicy(f"Step {step.label!r} failed and its error handler stops the "
                                  f"execution: {message}")
        return await self._recover(step, run, exc, hint=policy.instruction)

    async def _recover(self, step: PlanStep, run: _Run, exc: BaseException, *,
                       auto_retry: int = 0, hint: str | None = None) -> Recovery:
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
        await self._fail_step(step, run, message, error)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay if delay is not None else None
        while True:
            got = await self._await(frozenset({"retry", "skip", "takeover", "run_step"}),
                                    deadline=deadline, step_id=step.id)
            if got is None:
                self.journal.log("info", "Retrying automatically", step_id=step.id,
                                 category="error")
                return Recovery.RETRY
            assert isinstance(got, Command)
            if got.command == "run_step" and got.step_id not in (None, step.id):
                self.journal.log("warn", f"Cannot run {got.step_id} while {step.id} waits for "
                                 "recovery; retry, skip, take over or stop", step_id=step.id,
                                 category="command")
                continue
            if got.command in ("retry", "run_step"):
                self.journal.log("info", "Retry requested by a person", step_id=step.id,
                                 category="command")
                return Recovery.RETRY
            if got.command == "skip":
                self.done.add((step.id, run.iteration))
                await self._skip_step(step, run, self.journal.entry(
                    "info", f"Step skipped by a person: {step.label}", step_id=step.id,
                    category="command"), clear_error=True)
                return Recovery.SKIP
            await self._takeover_session(step, run, then=AfterTakeover.COMPLETE, first=got)
            return Recovery.DONE

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, AefError):
            text = exc.detail
        return self.secrets.text(text)[:2000]

    # actions -----------------------------------------------------------------------------------
    async def _perform_step(self, step: PlanStep, run: _Run,
                            attempt: int) -> StepOutcome | Between:
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
            if await self._between(step, run) == Between.TAKEN_OVER:
                return Between.TAKEN_OVER
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
        if await self._between(step, run) == Between.TAKEN_OVER:
            return Between.TAKEN_OVER
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
        if outcome.status == OutcomeStatus.LOST:
            log.error("stopping without a final write: %s", outcome.message)
            return
        if outcome.status == OutcomeStatus.HANDED_BACK:
            await self._hand_back(outcome)
            return
        self.browser_state.update(isReady=False, mode="closed")
        try:
            if outcome.status == OutcomeStatus.COMPLETED:
                await self._write_completed(outcome)
            elif outcome.status == OutcomeStatus.CANCELLED:
                await self._write_cancelled(outcome)
            elif outcome.status == OutcomeStatus.PAUSED:
                await self._write_released(outcome)
            else:
                await self._write_failed(outcome)
        except Stopped:  # a stop raced the final write (the row is `cancelling`)
            await self._write_cancelled(Outcome(OutcomeStatus.CANCELLED,
                                                "Execution stopped on request"))
        except LeaseLost as exc:
            log.error("no final write: %s", exc.detail)

    async def _write_completed(self, outcome: Outcome) -> None:
        self._progress = 1.0
        await self._write({"status": "completed", "current_step_id": None, "error": None,
                           "browser": {**self.browser_state, "lastAction": "Completed"},
                           "variables": self.variables},
                          event="execution_complete",
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
        await self._show({**self.browser_state, "lastAction": "Handed back"},
                         self.journal.entry(
                               "warn", f"{outcome.message}: the execution is handed back and "
                               "resumes from its last completed step"))

    async def _write_released(self, outcome: Outcome) -> None:
        """The execution stays `paused` without a browser; a resume starts a new runner that
        continues from the last completed step (offered in `error.recovery_options`, so a
        client shows the button)."""
        error = {"message": outcome.message, "recovery_options": list(RESUME_OPTIONS)}
        await self._write({"browser": {**self.browser_state, "mode": "released",
                                       "lastAction": "Paused; browser released"},
                           "error": error},
                          says=self.journal.entry("warn", outcome.message,
                                                  category="checkpoint"))

    async def _write_failed(self, outcome: Outcome) -> None:
        error = {"message": outcome.message, "recovery_options": list(RESUME_OPTIONS)}
        message = self.secrets.text(outcome.message)

        def fail(conn: Connection) -> None:
            store.fail_open_steps(conn, self.execution_id, message)

        await self._write_with(fail, {"status": "failed", "error": error,
                                      "browser": {**self.browser_state, "lastAction": "Failed"}},
                               event="execution_complete",
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
