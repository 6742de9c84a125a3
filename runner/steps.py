"""Running a task step: its actions in order (or a data step through the resolver), and what
happens when it fails (retries, the step's error handler, a person asked to recover).

`StepRunner` builds on `runner.interaction` (a failure asks a person) and is what
`runner.engine.Engine` runs each task and manual step with.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from aef.errors import AefError
from aef.models import Action, ComputeSpec, PlanStep, RecoveryPolicy
from aef.store import runner as runner_store
from runner import actions
from runner.control import Command, Stopped
from runner.errors import then_tell
from runner.flow import (
    AfterTakeover,
    Answer,
    Between,
    EndOfPlan,
    NextItem,
    PlanError,
    Recovery,
    Rejected,
    StepRun,
    StoppedByPolicy,
    lookup,
)
from runner.grounding import match_summary
from runner.interaction import Interaction
from runner.lease import LeaseLost

T = TypeVar("T")

MANUAL_STEP_TIMEOUT_SECONDS: Final = 3600
RECOVERY_OPTIONS: Final = (
    {"action": "retry", "label": "Retry the step"},
    {"action": "skip", "label": "Skip the step and continue"},
    {"action": "manual_takeover", "label": "Take over the browser"},
    {"action": "stop", "label": "Stop the execution"},
)


@dataclass
class StepOutcome:
    """What a task step produced: extracted variables and resolved locators."""

    variables: dict[str, Any] = field(default_factory=dict)
    resolutions: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Tries:
    """What one task's recovery policy has used up so far."""

    retries: int = 0
    fallback_done: bool = False


class StepRunner(Interaction):
    """Task and manual steps: perform, complete, recover."""

    # tasks -------------------------------------------------------------------------------------
    async def _with_recovery(self, step: PlanStep, run: StepRun,
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

    async def _run_manual(self, step: PlanStep, run: StepRun) -> None:
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

    async def _run_task(self, step: PlanStep, run: StepRun) -> None:
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
                                   step_id=step.id), behind=True)
            try:
                outcome = await self._perform_step(step, run, attempt)
            except (Stopped, Rejected, EndOfPlan, LeaseLost):
                raise
            except Exception as exc:  # StepError, TransientError, NeedsHuman, Blocked, ...
                # a failed background write (this step's start, the last one's end) came
                # first: it fails the run as it did when it was awaited, no recovery is asked
                await self._check_writes()
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

    async def _complete_task(self, step: PlanStep, run: StepRun,
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
        # the page is captured now; its upload and this write overlap the next action
        shot = await self._screenshot_behind(step, step.id)
        self._progress = max(self._progress, self._step_end)  # the completion shows its share
        # the line goes with the write: if the write is abandoned, the log must not say so
        await self._complete_step(step, run, self.journal.entry(
            "info", f"Step completed: {step.label}", step_id=step.id),
            browser=self.browser_state, result=result or None, locator=locator, shot=shot)

    async def _by_policy(self, step: PlanStep, run: StepRun, exc: BaseException,
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

    async def _recover(self, step: PlanStep, run: StepRun, exc: BaseException, *,
                       auto_retry: int = 0, hint: str | None = None) -> Recovery:
        """Hard error (or an announced auto-retry): ask the person; returns retry | skip | done.
        `hint`: what the step's error handler tells the person to do."""
        message = self._describe(exc)
        if hint:
            message = then_tell(message, self.secrets.text(hint))[:2000]
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
    async def _perform_step(self, step: PlanStep, run: StepRun,
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

    async def _compute(self, step: PlanStep, spec: ComputeSpec, run: StepRun) -> StepOutcome:
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
                lambda c: runner_store.cached_locator(c, self.execution_id, step.id))
            if found is None:
                return None
            self._locators[step.id] = found
        return dict(self._locators[step.id].get("actions") or {})

    async def _perform(self, action: Action, run: StepRun, cached: dict[str, Any] | None,
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


def compute_resolver(resolver: Any) -> Any | None:
    """The configured resolver (AEF_LLM_RESOLVER) if it can compute data steps: it has an
    async `compute(spec: ComputeSpec, data, page)` returning a JSON value."""
    for candidate in getattr(resolver, "resolvers", None) or [resolver]:
        if callable(getattr(candidate, "compute", None)):
            return candidate
    return None


def describe_action(action: Action) -> str:
    """A short human description from the *template* (placeholders, never secret values)."""
    target = action.selector or action.url or action.instruction or action.key or ""
    text = f"{action.type} {target}".strip()
    return text if len(text) <= 200 else text[:197] + "..."
