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
import logging
import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from aef import rules
from aef.db import Connection, Database, get_database
from aef.models import Action, AefConfig, PlanStep
from aef.plan import all_ids, contains, nested, selected_within, selection_roots, with_bodies
from aef.screenshots import ScreenshotStore
from aef.settings import Settings
from aef.store import runner as runner_store
from runner import actions
from runner.browser import BrowserSession, open_browser
from runner.control import Control, Stopped, listen_url
from runner.flow import (
    LOOP_STRIDE,
    Answer,
    Between,
    EndOfPlan,
    NextItem,
    Outcome,
    OutcomeStatus,
    PausedOut,
    PlanError,
    Rejected,
    StepRun,
    StoppedByPolicy,
    iteration_number,
    lookup,
)
from runner.grounding import build_resolver
from runner.journal import Journal
from runner.lease import Lease, LeaseLost, NotClaimable
from runner.preview import covered_steps
from runner.redaction import Secrets
from runner.state import StepChange
from runner.steps import StepRunner

log = logging.getLogger("aef.runner")

# A database briefly unavailable (restart, failover) or busy: a write is retried with backoff
# for half the lease (Engine), so the heartbeat can still renew it before it runs out.

RESUME_OPTIONS: Final = (
    {"action": "resume", "label": "Resume from the last completed step"},
)


# --- redaction --------------------------------------------------------------------------------
# How an engine gets its browser: (work dir, on_block) -> a session context manager. The
# default launches a fresh Chromium; a pool worker hands over the warm one it launched ahead.
BrowserFactory = Callable[[Path, Callable[[str, str], None]],
                          AbstractAsyncContextManager[BrowserSession]]


class Engine(StepRunner):
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
        self.plan = []
        self.variables = {}
        self.done = set()
        self.results = {}
        self.step_ids: set[str] | None = None  # the selected steps no other selected one holds
        self._selected: set[str] = set()  # those with their bodies: what runs
        self.resume_target: str | None = None
        self.session = None
        self.browser_state = {}
        self._progress = 0.0
        self._step_end = 0.0  # the progress the step being run reaches when it completes
        self._unit = 0.0
        self._locators = {}
        self._upload = None
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
                await self._query(lambda c: runner_store.hand_back_lease(c, self.execution_id,
                                                                  self.lease.runner_id))
            except Exception as exc:  # then the lease simply runs out
                log.error("the lease could not be handed back: %s", type(exc).__name__)
        return outcome

    async def _release_lease(self) -> None:
        try:
            await self._query(lambda c: runner_store.release_lease(c, self.execution_id,
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
            document = runner_store.get_document(conn, str(row["document_id"]))
            return (document, runner_store.get_secrets(conn, self.execution_id),
                    runner_store.get_steps(conn, self.execution_id))

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
            self.step_ids = selection_roots(self.plan, self.step_ids & known)
            if not self.step_ids:
                raise PlanError("none of the selected step ids is in the plan")
            self._selected = with_bodies(self.plan, self.step_ids)
            self._unit = 1.0 / len(self.step_ids)
        self.screenshots.start_at(self.execution_id, int(row.get("last_seq") or 0) + 1)

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
                await self._visit(step, StepRun(), weight)
        except EndOfPlan:
            pass
        await self._check_writes(wait=True)  # the last steps' writes went in the background
        return Outcome(OutcomeStatus.COMPLETED, "Execution completed")

    async def _return_to(self, url: str) -> None:
        """Open the page a released pause left (through the network guard, like any
        navigation); a failure is a warning: the next step's own recovery applies."""
        try:
            result = await self._perform(Action(type="navigate", url=url), StepRun(), None, 1)
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

    # the tree ----------------------------------------------------------------------------------
    async def _visit(self, step: PlanStep, run: StepRun, weight: float) -> None:
        """Run `step` unless a resume, a step selection or resume_from says otherwise."""
        start = self._progress
        if self.step_ids is not None and step.id not in self._selected:
            if not selected_within(step, self.step_ids):
                return
            for child in nested(step):  # only the selected steps below run; their own weight counts
                await self._visit(child, run, 0.0)
            return
        if self.step_ids is not None and step.id in self.step_ids:
            weight = self._unit  # a selected step's body shares its unit as in a whole run
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
        await self._check_writes()  # a failed background write ends the run here
        if await self._between(step, run) != Between.TAKEN_OVER:  # else a person did this step
            self._step_end = start + weight
            await self._run_step(step, run, weight)
        self._progress = start + weight

    async def _run_step(self, step: PlanStep, run: StepRun, weight: float) -> None:
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

    async def _skip_unit(self, step: PlanStep, run: StepRun, covered: list[PlanStep]) -> None:
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

    async def _start_container(self, step: PlanStep, run: StepRun, what: str) -> None:
        await self._start_step(step, run, says=self.journal.entry(
            "info", f"{what} started: {step.label}", step_id=step.id))

    async def _finish_container(self, step: PlanStep, run: StepRun,
                                result: Mapping[str, Any] | None = None, *,
                                says: runner_store.LogRecord | None = None) -> None:
        self.done.add((step.id, run.iteration))
        await self._write({"variables": self.variables},
                          StepChange(step, run.iteration, "completed", result=result or None),
                          says=says)

    async def _run_compound(self, step: PlanStep, run: StepRun, weight: float) -> None:
        await self._start_container(step, run, "Step")
        share = weight / max(1, len(step.children))
        for child in step.children:
            await self._visit(child, run, share)
        await self._finish_container(step, run, says=self.journal.entry(
            "info", f"Step completed: {step.label}", step_id=step.id))

    def _loop_items(self, step: PlanStep, run: StepRun) -> list[Any]:
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

    async def _run_loop(self, step: PlanStep, run: StepRun, weight: float) -> None:
        if step.loop is None:
            raise PlanError(f"Loop step {step.id} has no loop specification")
        await self._start_container(step, run, "Loop")
        items = await self._with_recovery(step, run, lambda: self._loop_items(step, run))
        if items is None:  # skipped by the person
            return
        count = 0
        share = weight / max(1, len(items))
        for index, item in enumerate(items, start=1):
            child = StepRun(iteration_number(run.iteration, index),
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

    async def _skip_item(self, step: PlanStep, run: StepRun, index: int, total: int,
                         why: str) -> None:
        """What a loop item given up leaves: its unfinished steps `skipped` (so a resume does
        not run them), and a line saying why and that the loop goes on."""
        def skip(conn: Connection) -> list[str]:
            return runner_store.skip_open_steps(conn, self.execution_id, run.iteration)

        skipped = await self._write_with(skip, {"status": "running"}, says=self.journal.entry(
            "info", f"Item {index} of {total} {why}; "
            + ("going on with the next item" if index < total else "that was the last item"),
            step_id=step.id, category="loop"))
        self.done.update((step_id, run.iteration) for step_id in skipped or ())

    def _exit(self, step: PlanStep, run: StepRun) -> bool:
        assert step.loop is not None and step.loop.exit_condition
        try:
            return rules.evaluate(step.loop.exit_condition, {**self.variables, **run.scope})
        except rules.RuleError as exc:
            self.journal.log("warn", f"Exit condition not evaluated ({exc.detail}); continuing",
                             step_id=step.id, category="loop")
            return False

    async def _run_decision(self, step: PlanStep, run: StepRun, weight: float) -> None:
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
        try:  # the run ended elsewhere: a background write's failure is superseded here
            await self.journal.settle()
        except Exception as exc:
            log.warning("a write before the end failed: %s",
                        self.secrets.text(f"{type(exc).__name__}: {exc}"))
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
            row = runner_store.get_execution(conn, self.execution_id)
            if row is None:
                raise LeaseLost("the execution row is not visible any more")
            status = str(row["status"])
            runner_store.cancel_open_steps(conn, self.execution_id, message)
            runner_store.close_pending_checkpoints(conn, self.execution_id, "execution_cancelled")
            if status == "cancelled":
                return "execution_update"
            if status not in ("cancelling", "waiting_checkpoint"):
                runner_store.update_execution(conn, self.execution_id, status="cancelling")
            runner_store.update_execution(conn, self.execution_id, status="cancelled",
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
            runner_store.fail_open_steps(conn, self.execution_id, message)

        await self._write_with(fail, {"status": "failed", "error": error,
                                      "browser": {**self.browser_state, "lastAction": "Failed"}},
                               event="execution_complete",
                               says=self.journal.entry("error", outcome.message))


async def run_execution(settings: Settings, execution_id: str, runner_token: str, *,
                        db: Database | None = None, screenshots: ScreenshotStore | None = None,
                        runner_id: str | None = None) -> Outcome:
    """The runner's main: one execution from claim to final state."""
    engine = Engine(settings, db or get_database(), execution_id, runner_token,
                    screenshots=screenshots, runner_id=runner_id)
    return await engine.run()
