"""The engine's state and every write of it: the base the engine's parts are built on.

`EngineState` declares what one execution's engine holds (the plan, the variables, the browser
state, the journal...); `runner.engine.Engine` sets it up. Every state change goes through one
typed core (`_write_with`): logs, an optional step row, the execution row and the event in one
transaction (see runner/journal.py); the named operations (`_start_step`, `_complete_step`,
`_skip_step`, `_fail_step`, `_set_status`, `_show`...) are what the engine does with it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from aef.db import Connection, Database
from aef.errors import AefError
from aef.models import AefConfig, PlanStep
from aef.screenshots import ScreenshotStore
from aef.settings import Settings
from aef.store import runner as runner_store
from runner.browser import BrowserSession
from runner.control import Control, Stopped
from runner.flow import StepRun
from runner.grounding import Resolver
from runner.journal import Journal
from runner.lease import Lease, LeaseLost
from runner.retry import retry_unavailable

if TYPE_CHECKING:
    from runner.redaction import Secrets

T = TypeVar("T")

SCREENSHOT_KEYS = ("screenshot", "screenshotKey")


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


class EngineState:
    """What the engine's parts share: set up by `runner.engine.Engine`."""

    settings: Settings
    db: Database
    execution_id: str
    _token: str
    screenshots: ScreenshotStore
    control: Control
    lease: Lease
    secrets: Secrets
    journal: Journal
    status: str
    config: AefConfig
    plan: list[PlanStep]
    variables: dict[str, Any]
    done: set[tuple[str, int]]  # (step id, iteration) completed or skipped
    results: dict[tuple[str, int], dict[str, Any]]
    session: BrowserSession | None
    browser_state: dict[str, Any]
    resolver: Resolver
    _progress: float
    _step_end: float  # the progress the step being run reaches when it completes
    _locators: dict[str, dict[str, Any]]
    _upload: asyncio.Task[dict[str, Any] | None] | None  # the last screenshot upload behind

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

    # reads -------------------------------------------------------------------------------------
    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.db.as_runner(self.execution_id, self._token) as conn:
            return fn(conn)

    async def _query(self, fn: Callable[[Connection], T]) -> T:
        """A read (or an idempotent update) in its own transaction, retried like a state write
        while the database is briefly unavailable or busy: a restart must not fail the run."""
        return await retry_unavailable(lambda: self._read(fn), self.journal.retry_seconds)

    # writes ------------------------------------------------------------------------------------
    # Every state change goes through `_write_with`: logs, an optional step row, the execution
    # row and the event, in one transaction. The named operations below are what the engine
    # does with it; `says` (from `journal.entry`) is the line describing the change, written
    # only with it, never on its own (see Journal).
    async def _write_with(self, extra: Callable[[Connection], T], change: ExecutionChange,
                          step: StepChange | None = None, *, event: str = "execution_update",
                          says: runner_store.LogRecord | None = None) -> T:
        """One transaction: `extra` first (its result is returned), then the step row, then the
        execution row (redacted, with the current progress), then the event."""
        write, extra_result = self._change(extra, change, step)
        try:
            await self.journal.commit(write, event=event,
                                      says=(says,) if says is not None else ())
            return extra_result[-1]
        except AefError as exc:
            await self._refused(exc)
            raise

    def _write_behind(self, change: ExecutionChange, step: StepChange | None = None, *,
                      says: runner_store.LogRecord | None = None,
                      shot: asyncio.Task[dict[str, Any] | None] | None = None) -> None:
        """`_write` in the background (Journal.submit): the next action does not wait for
        it. `shot`: the screenshot upload whose URL this write publishes (it waits for it).
        A failure is raised at the next write or `_check_writes`."""
        write, _ = self._change(_nothing, change, step, shot=shot)
        self.journal.submit(write, says=(says,) if says is not None else (), after=shot)

    async def _check_writes(self, *, wait: bool = False) -> None:
        """Raise the failure of a background write (as `_write` would have); `wait`: once
        every write asked for is made."""
        try:
            if wait:
                await self.journal.settle()
            else:
                self.journal.check()
        except AefError as exc:
            await self._refused(exc)
            raise

    async def _refused(self, exc: AefError) -> None:
        """A write the database refused as an illegal transition: the execution is being
        stopped (Stopped) or already ended meanwhile (LeaseLost); else nothing (re-raised)."""
        if exc.code == "illegal_transition":
            current_status = await self._query(
                lambda c: runner_store.get_status(c, self.execution_id))
            if current_status == "cancelling":
                self._saw_status(current_status)
                raise Stopped() from exc
            if current_status in runner_store.TERMINAL:  # e.g. the sweeper ended it meanwhile
                raise LeaseLost(f"the execution is already {current_status}") from exc

    def _change(self, extra: Callable[[Connection], T], change: ExecutionChange,
                step: StepChange | None = None, *,
                shot: asyncio.Task[dict[str, Any] | None] | None = None,
                ) -> tuple[Callable[[Connection], dict[str, Any]], list[T]]:
        """The write's statements, with the values of now (redacted); `shot`'s URL is added
        when it is written. While an upload is on its way, a write that does not publish it
        leaves the screenshot as it is (it would put the previous one back after it)."""
        patch: dict[str, Any] = dict(change)
        for key in ("browser", "error", "variables"):
            if patch.get(key) is not None:
                patch[key] = self.secrets.deep(dict(patch[key]))
        uploading = self._upload is not None and not self._upload.done()
        if patch.get("browser") is not None and (uploading or shot is not None):
            patch["browser"] = {k: v for k, v in patch["browser"].items()
                                if k not in SCREENSHOT_KEYS}
        if shot is not None:
            self._upload = shot
        progress = self._percent()
        extra_result: list[T] = []

        def write(conn: Connection) -> dict[str, Any]:
            published = shot.result() if shot is not None and shot.done() else None
            if published:
                patch["browser"] = {**(patch.get("browser") or {}),
                                    **self.secrets.deep(published)}
            extra_result.append(extra(conn))
            if step is not None:
                runner_store.upsert_step(
                    conn, self.execution_id, step.step.id, step.iteration, step.status,
                    label=step.step.label, new_attempt=step.new_attempt,
                    error=self.secrets.text(step.error) if step.error is not None else None,
                    result=self._redacted(step.result), locator=self._redacted(step.locator))
            row = runner_store.update_execution(conn, self.execution_id, progress=progress, **patch)
            if row is None:
                raise LeaseLost("the execution row is not visible any more")
            return row  # the journal reads the status from it

        return write, extra_result

    async def _write(self, change: ExecutionChange, step: StepChange | None = None, *,
                     event: str = "execution_update",
                     says: runner_store.LogRecord | None = None) -> None:
        await self._write_with(_nothing, change, step, event=event, says=says)

    def _redacted(self, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return self.secrets.deep(dict(value)) if value is not None else None

    async def _start_step(self, step: PlanStep, run: StepRun, *,
                          browser: Mapping[str, Any] | None = None,
                          result: Mapping[str, Any] | None = None, new_attempt: bool = True,
                          says: runner_store.LogRecord | None = None, behind: bool = False) -> None:
        """The step row `running` (a new attempt unless a person takes over a running step);
        it becomes the current step and any earlier error is cleared. `behind`: written in
        the background (`_write_behind`)."""
        change: ExecutionChange = {"status": "running", "current_step_id": step.id,
                                   "error": None}
        if browser is not None:
            change["browser"] = browser
        moved = StepChange(step, run.iteration, "running", new_attempt=new_attempt,
                           result=result)
        if behind:
            self._write_behind(change, moved, says=says)
        else:
            await self._write(change, moved, says=says)

    async def _complete_step(self, step: PlanStep, run: StepRun, says: runner_store.LogRecord, *,
                             browser: Mapping[str, Any], result: Mapping[str, Any] | None,
                             locator: Mapping[str, Any] | None = None,
                             shot: asyncio.Task[dict[str, Any] | None] | None = None) -> None:
        """A task done (by the runner or a person): `completed`, with the variables. With
        `shot` (its screenshot's upload) it is written in the background, with that URL."""
        change: ExecutionChange = {"status": "running", "browser": browser,
                                   "variables": self.variables}
        moved = StepChange(step, run.iteration, "completed", result=result, locator=locator)
        if shot is not None:
            self._write_behind(change, moved, says=says, shot=shot)
        else:
            await self._write(change, moved, says=says)

    async def _finish_step(self, step: PlanStep, run: StepRun, status: str,
                           says: runner_store.LogRecord, *,
                           result: Mapping[str, Any] | None = None) -> None:
        """A step that ends where it is (an `end`, a manual step): `completed` or `skipped`,
        and it becomes the current step."""
        await self._write({"status": "running", "current_step_id": step.id},
                          StepChange(step, run.iteration, status, result=result), says=says)

    async def _skip_step(self, step: PlanStep, run: StepRun, says: runner_store.LogRecord, *,
                         error: str | None = None, clear_error: bool = False) -> None:
        """The step row `skipped` (`error`: why, on the row); `clear_error` after a failure."""
        change: ExecutionChange = {"status": "running"}
        if clear_error:
            change["error"] = None
        await self._write(change, StepChange(step, run.iteration, "skipped", error=error),
                          says=says)

    async def _fail_step(self, step: PlanStep, run: StepRun, message: str,
                         error: Mapping[str, Any]) -> None:
        """The step row `failed`, the execution `waiting_recovery` with `error` (the options)."""
        await self._write({"status": "waiting_recovery", "current_step_id": step.id,
                           "error": error, "browser": self.browser_state},
                          StepChange(step, run.iteration, "failed", error=message),
                          event="error")

    async def _set_status(self, status: str, browser: Mapping[str, Any],
                          says: runner_store.LogRecord) -> None:
        """The execution's status changes (paused, running again), nothing else."""
        await self._write({"status": status, "browser": browser}, says=says)

    async def _show(self, browser: Mapping[str, Any],
                    says: runner_store.LogRecord | None = None) -> None:
        """Only the browser state changes (a screenshot, a takeover starting or ending)."""
        await self._write({"browser": browser}, says=says)
