"""A person in the loop: checkpoints (asked before a step), commands between two actions
(stop, pause, resume, takeover), a takeover session and the screenshots a person sees.

`Interaction` is the part of the engine that waits for people; `runner.steps` and
`runner.engine` build on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

from aef.db import Connection
from aef.models import PlanStep
from aef.store import runner as runner_store
from runner.browser import capture_jpeg
from runner.control import Command, Stopped
from runner.flow import DEFAULT_ANSWER, AfterTakeover, Answer, Between, PausedOut, Rejected, StepRun
from runner.preview import build_preview, outlined_screenshot
from runner.state import EngineState, StepChange
from runner.takeover import InputRefused, Takeover

T = TypeVar("T")

TAKEOVER_SCREENSHOT_SECONDS: Final = 1.0


class Interaction(EngineState):
    """Checkpoints, commands, takeovers and screenshots of one execution."""

    # checkpoints -------------------------------------------------------------------------------
    async def _ask(self, step: PlanStep, run: StepRun, checkpoint_type: str, title: str,
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

    async def _ask_once(self, step: PlanStep, run: StepRun, checkpoint_type: str, title: str,
                        description: str | None, timeout_seconds: int, default_action: str, *,
                        manual: bool, preview: Mapping[str, Any] | None,
                        choices: list[dict[str, str]]) -> dict[str, Any]:
        """Open the checkpoint and wait until it is answered or expired; returns its row."""
        def insert(conn: Connection) -> dict[str, Any]:
            return runner_store.insert_checkpoint(
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
                row = runner_store.get_checkpoint(conn, checkpoint_id)
                if row is not None and row["status"] == "pending" and row["is_expired"]:
                    row = runner_store.expire_checkpoint(conn, checkpoint_id) or row
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

    async def _preview(self, step: PlanStep, run: StepRun,
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

    async def _pause_unanswered(self, step: PlanStep, run: StepRun, title: str,
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

    async def _between(self, step: PlanStep, run: StepRun) -> Between | None:
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

    async def _paused(self, step: PlanStep, run: StepRun) -> Between | None:
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
    async def _takeover_session(self, step: PlanStep, run: StepRun, *, then: AfterTakeover,
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
    async def _screenshot(self, step: PlanStep, run: StepRun, name: str, *,
                          commit: bool = True) -> None:
        """Capture, upload, update browser state; an upload failure is a warning only."""
        if self.session is None:
            return
        if self._upload is not None and not self._upload.done():
            await asyncio.wait({self._upload})  # else the writes below would leave this shot out
        data = await self._capture()
        if data is not None:
            await self._upload_shot(step, name, data)
        if commit:
            await self._show(self.browser_state)

    async def _screenshot_behind(self, step: PlanStep,
                                 name: str) -> asyncio.Task[dict[str, Any] | None] | None:
        """Capture now (the page as the step left it); the upload goes on while the next
        action runs. Returns it: what the write publishing the shot waits for (None: no shot)."""
        if self.session is None:
            return None
        data = await self._capture()
        if data is None:
            return None
        previous = self._upload

        async def upload() -> dict[str, Any] | None:
            # one upload at a time, in order: after a failure the next one is paused at once
            # (ScreenshotStore) instead of failing again
            if previous is not None and not previous.done():
                await asyncio.wait({previous})
            return await self._upload_shot(step, name, data)

        return asyncio.create_task(upload(), name="aef-screenshot-upload")

    async def _capture(self) -> bytes | None:
        page = self.page
        self.browser_state["currentUrl"] = page.url
        return await capture_jpeg(page, secrets=self.secrets.values.values())

    async def _upload_shot(self, step: PlanStep, name: str,
                           data: bytes) -> dict[str, Any] | None:
        """Upload; the URL goes into the browser state (and is returned). Never raises: an
        upload failure is a warning only."""
        try:
            key, url = await self.screenshots.put_async(self.execution_id, name, data)
        except Exception as exc:
            self.journal.log("warn", f"Screenshot upload failed: {type(exc).__name__}",
                             category="browser", step_id=step.id)
            return None
        self.browser_state.update(screenshot=url, screenshotKey=key)
        return {"screenshot": url, "screenshotKey": key}


def _is_input(command: Command) -> bool:
    """`input`, or `takeover` carrying an input payload (how the API's ActionRequest sends it)."""
    return command.command == "input" or (command.command == "takeover"
                                          and bool(command.payload.get("kind")))


def checkpoint_choices(checkpoint_type: str, step: PlanStep, run: StepRun,
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
