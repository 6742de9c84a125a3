"""Follow an execution live in the terminal, the way the frontend does.

Live messages arrive on the private Realtime channel `execution:<id>` through the Supabase
client for Python (supabase-py), authorized with the user's token exactly as supabase-js is.
`GET /api/aef/live/{id}?after=<seq>` is the backstop: it fills a gap in `seq`, catches up
what happened before the subscription, and takes over (every second) when the socket drops.
Every message carries a gapless `seq`, so the two paths never show a message twice.

What to do at a checkpoint or an error is a `Decider`'s business: `ReadOnly` (`aef watch`)
only shows, `AutoApprove` (`aef demo --yes`) approves and recovers by rule, `AskPerson` asks
in the terminal. Answers go through the API (`/checkpoint/{id}`, `/action/{id}`), as a
person's clicks would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import httpx

FINAL = frozenset({"completed", "cancelled"})
POLL_WHILE_LIVE_SECONDS = 5.0
POLL_WITHOUT_SOCKET_SECONDS = 1.0
SUBSCRIBE_TIMEOUT_SECONDS = 10.0
WAIT = "wait"  # a Decider's answer: do nothing now, keep following


class ApiError(Exception):
    """A problem+json answer from the API."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"detail": str(body)}
        super().__init__(f"{status} {self.code}: {self.body.get('detail', '')}")

    @property
    def code(self) -> str:
        return str(self.body.get("code", "error"))


class ApiClient:
    """The AEF HTTP API with one user's bearer token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout,
                                      headers={"Authorization": f"Bearer {token}"})

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ApiError(response.status_code, body)
        return response

    async def transform(self, sop: dict[str, Any],
                        config: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"sop": sop}
        if config:
            body["config"] = config
        return dict((await self._call("POST", "/api/aef/transform", json=body)).json())

    async def execute(self, document_id: str, *, execution_id: str | None = None,
                      secrets: dict[str, str] | None = None,
                      variables: dict[str, str] | None = None,
                      idempotency_key: str | None = None) -> dict[str, Any]:
        """Start an execution; `secrets` are masked everywhere, `variables` (e.g. a base
        URL) are plain inputs for {{placeholders}} and show in logs as they are."""
        body: dict[str, Any] = {"aefDocumentId": document_id}
        if execution_id:
            body["executionId"] = execution_id
        if secrets:
            body["secrets"] = secrets
        if variables:
            body["variables"] = variables
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self._call("POST", "/api/aef/execute", json=body, headers=headers)
        return dict(response.json())

    async def live(self, execution_id: str, after: int,
                   etag: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
        headers = {"If-None-Match": etag} if etag else {}
        response = await self._call("GET", f"/api/aef/live/{execution_id}",
                                    params={"after": after}, headers=headers)
        if response.status_code == 304:
            return None, etag
        return dict(response.json()), response.headers.get("etag")

    async def logs_page(self, execution_id: str, after: str | None = None,
                        limit: int = 500) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        response = await self._call("GET", f"/api/aef/logs/{execution_id}", params=params)
        return dict(response.json())

    async def all_logs(self, execution_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """Every log entry, following `nextCursor` to the end."""
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.logs_page(execution_id, cursor, limit)
            entries.extend(page.get("logs") or [])
            cursor = page.get("nextCursor")
            if not cursor:
                return entries

    async def stop(self, execution_id: str) -> dict[str, Any]:
        return dict((await self._call("DELETE", f"/api/aef/stop/{execution_id}")).json())

    async def answer_checkpoint(self, checkpoint_id: str, response: str) -> dict[str, Any]:
        reply = await self._call("POST", f"/api/aef/checkpoint/{checkpoint_id}",
                                 json={"response": response})
        return dict(reply.json())

    async def action(self, execution_id: str, action: str,
                     step_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"action": action}
        if step_id:
            body["stepId"] = step_id
        return dict((await self._call("POST", f"/api/aef/action/{execution_id}",
                                      json=body)).json())


# --------------------------------------------------------------------------------------------
# What we know about the execution
# --------------------------------------------------------------------------------------------


@dataclass
class LiveState:
    """The execution as the live messages describe it (latest `seq` wins)."""

    execution_id: str
    status: str = "unknown"
    progress: int = 0
    current_step: str | None = None
    current_url: str | None = None
    screenshot: str | None = None
    last_action: str | None = None
    last_seq: int = 0
    message_type: str | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # pending ones
    error: dict[str, Any] | None = None
    logs: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=12))
    log_ids: set[int] = field(default_factory=set)
    answered: dict[str, str] = field(default_factory=dict)  # checkpoint id -> decision
    actions: list[str] = field(default_factory=list)  # recovery actions sent
    screenshots_seen: int = 0
    received_live: int = 0  # messages that came over Realtime (not from /live)
    transport: str = "connecting"
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def apply(self, message: dict[str, Any], *, snapshot: bool = False) -> list[dict[str, Any]]:
        """Take in one live message; returns its log entries not seen before.

        Events older than what we hold are ignored, except their logs; a snapshot (the
        `/live` message) refreshes the state even at the same `seq` (its screenshot URL is
        freshly signed).
        """
        seq = int(message.get("seq") or 0)
        new_logs = []
        for entry in message.get("logs") or []:
            log_id = entry.get("id")
            if isinstance(log_id, int) and log_id not in self.log_ids:
                self.log_ids.add(log_id)
                self.logs.append(entry)
                new_logs.append(entry)
        if seq < self.last_seq or (seq == self.last_seq and not snapshot and seq):
            return new_logs
        execution = message.get("execution") or {}
        browser = message.get("browser") or {}
        self.last_seq = max(self.last_seq, seq)
        self.message_type = message.get("type")
        self.status = execution.get("status") or self.status
        self.progress = int(execution.get("progress") or 0)
        self.current_step = execution.get("currentStep")
        if browser.get("screenshot") and browser.get("screenshot") != self.screenshot:
            self.screenshot = browser["screenshot"]
            self.screenshots_seen += 1
        self.current_url = browser.get("currentUrl") or self.current_url
        self.last_action = browser.get("lastAction") or self.last_action
        self.checkpoints = [c for c in message.get("checkpoints") or []
                            if c.get("status") == "pending"]
        self.error = message.get("error")
        timestamp = message.get("timestamp")
        if timestamp:
            self.first_timestamp = self.first_timestamp or timestamp
            self.last_timestamp = timestamp
        return new_logs

    @property
    def recovery_options(self) -> list[str]:
        options = (self.error or {}).get("recovery_options") or []
        return [str(o.get("action")) for o in options if isinstance(o, dict)]

    @property
    def needs_recovery(self) -> bool:
        return self.status in ("waiting_recovery", "failed") and bool(self.recovery_options)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started


# --------------------------------------------------------------------------------------------
# Decisions at checkpoints and errors
# --------------------------------------------------------------------------------------------


class Decider(Protocol):
    async def checkpoint(self, state: LiveState, checkpoint: dict[str, Any]) -> str | None:
        """approve | reject | skip, or None to leave it to someone else."""
        ...

    async def recover(self, state: LiveState) -> str:
        """A recovery action (retry, skip, resume, stop, ...), or WAIT."""
        ...


def describe_checkpoint(checkpoint: dict[str, Any]) -> list[str]:
    """A checkpoint as a person reads it: what it asks, what the step is about to do (the
    preview's values and target names, the outlined screenshot), and what each answer does."""
    lines = [f"Checkpoint: {checkpoint.get('title')}",
             f"  step {checkpoint.get('stepId')}: {checkpoint.get('description') or ''}"]
    preview = checkpoint.get("preview") or {}
    if preview:
        lines.append(f"  about to do, on {preview.get('url') or '-'}:")
        for number, action in enumerate(preview.get("actions") or [], start=1):
            target = action.get("target")
            where = ""
            if target:
                name = " ".join(x for x in (target.get("role"),
                                            f'"{target["name"]}"' if target.get("name") else "")
                                if x)
                found = "found" if target.get("resolved") else "not on the page yet"
                where = f"  [{name or target.get('selector') or 'element'}: {found}]"
            value = f" = {action['value']}" if action.get("value") not in (None, "") else ""
            lines.append(f"    {number}. {action.get('description')}{value}{where}")
        lines.append(f"  preview screenshot: {preview.get('screenshot') or '-'}")
    for choice in checkpoint.get("choices") or []:
        lines.append(f"  {choice.get('response')}: {choice.get('meaning')}")
    lines.append(f"  if nobody answers by {checkpoint.get('expiresAt')}: "
                 f"{checkpoint.get('defaultAction')}")
    return lines


class ReadOnly:
    """`aef watch`: shows everything, answers nothing."""

    async def checkpoint(self, state: LiveState, checkpoint: dict[str, Any]) -> str | None:
        return None

    async def recover(self, state: LiveState) -> str:
        return WAIT


class AutoApprove:
    """`--yes`: approve every checkpoint; on an error retry a step once, then skip it."""

    def __init__(self, max_actions: int = 10) -> None:
        self.retried: set[str] = set()
        self.max_actions = max_actions
        self.taken = 0

    async def checkpoint(self, state: LiveState, checkpoint: dict[str, Any]) -> str | None:
        return "approve"

    async def recover(self, state: LiveState) -> str:
        options = state.recovery_options
        if (state.error or {}).get("auto_retry_in") and state.status != "failed":
            return WAIT  # the runner retries by itself
        if self.taken >= self.max_actions:
            return "stop" if "stop" in options and state.status != "failed" else WAIT
        step = state.current_step or ""
        choice = WAIT
        if "retry" in options and step not in self.retried:
            self.retried.add(step)
            choice = "retry"
        elif "skip" in options:
            choice = "skip"
        elif "resume" in options and step not in self.retried:
            self.retried.add(step)
            choice = "resume"
        elif "stop" in options and state.status != "failed":
            choice = "stop"
        if choice != WAIT:
            self.taken += 1
        return choice


class AskPerson:
    """Interactive: ask in the terminal through the view."""

    def __init__(self, view: View) -> None:
        self.view = view

    async def checkpoint(self, state: LiveState, checkpoint: dict[str, Any]) -> str | None:
        lines = describe_checkpoint(checkpoint)
        return await self.view.ask("\n".join(lines), ["approve", "reject", "skip"], "approve")

    async def recover(self, state: LiveState) -> str:
        error = state.error or {}
        message = f"Error at step {state.current_step}: {error.get('message')}"
        if error.get("auto_retry_in"):
            message += f"\n  (the runner retries by itself in {error['auto_retry_in']} s)"
        return await self.view.ask(message, [*state.recovery_options, WAIT], WAIT)


# --------------------------------------------------------------------------------------------
# Reading answers: on the event loop, so Ctrl-C ends a question at once
# --------------------------------------------------------------------------------------------


class _FdLines:
    """Lines from a file descriptor, read when the event loop says it is readable.

    A thread blocked in `input()` cannot be interrupted: Ctrl-C would cancel the run, and then
    `asyncio.run` would wait for that thread, i.e. until the person pressed Enter. Waiting on
    the loop instead, a cancellation ends the wait immediately.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            loop.add_reader(self.fd, wake)
        except PermissionError:  # a regular file (epoll refuses those): never blocks
            return
        try:
            await ready
        finally:
            loop.remove_reader(self.fd)

    async def readline(self) -> str:
        while b"\n" not in self.pending:
            await self._readable()
            chunk = os.read(self.fd, 4096)
            if not chunk:
                line, self.pending = self.pending, b""
                if not line:
                    raise EOFError("stdin was closed while a question was asked")
                return line.decode(errors="replace")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode(errors="replace")


_readers: dict[int, _FdLines] = {}


async def read_line() -> str:
    """One line from stdin (without its newline), cancellable while it waits."""
    stream = sys.stdin
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream never blocks
        line = stream.readline()
        if not line:
            raise EOFError("stdin was closed while a question was asked") from None
        return line.rstrip("\n")
    return await _readers.setdefault(fd, _FdLines(fd)).readline()


async def ask_until_valid(say: Callable[[str], None], prompt: Callable[[str], None],
                          question: str, choices: list[str], default: str) -> str:
    """Ask `question` until the answer is one of `choices` (empty: `default`)."""
    say(question)
    while True:
        prompt(f"  {' / '.join(choices)} [{default}]: ")
        try:
            answer = (await read_line()).strip().lower() or default
        except (asyncio.CancelledError, EOFError):
            say("")  # what follows starts on a line of its own, not after the prompt
            raise
        if answer in choices:
            return answer
        say(f"  please answer one of: {', '.join(choices)}")


# --------------------------------------------------------------------------------------------
# Views: a rich live panel on a terminal, plain lines otherwise
# --------------------------------------------------------------------------------------------


class View(Protocol):
    def show(self, state: LiveState, new_logs: list[dict[str, Any]]) -> None: ...

    def note(self, text: str) -> None: ...

    async def ask(self, question: str, choices: list[str], default: str) -> str: ...

    def close(self) -> None: ...


def _log_line(entry: dict[str, Any]) -> str:
    stamp = str(entry.get("timestamp") or "")[11:19]
    step = f" [{entry['stepId']}]" if entry.get("stepId") else ""
    return f"{stamp} {entry.get('level', '')!s:<5}{step} {entry.get('message', '')}"


def _without_query(url: str | None) -> str:
    return (url or "").split("?", 1)[0]


class PlainView:
    """One line per change: fit for logs, CI and pipes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._last: tuple[Any, ...] = ()

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def show(self, state: LiveState, new_logs: list[dict[str, Any]]) -> None:
        for entry in new_logs:
            self._print(f"  {_log_line(entry)}")
        headline = (state.status, state.progress, state.current_step, state.screenshot,
                    state.transport)
        if headline != self._last:
            self._last = headline
            shot = f"  screenshot {_without_query(state.screenshot)}" if state.screenshot else ""
            self._print(f"[{state.status} {state.progress:>3}%] step {state.current_step or '-'}"
                        f"  via {state.transport}{shot}")

    def note(self, text: str) -> None:
        self._print(text)

    async def ask(self, question: str, choices: list[str], default: str) -> str:
        def prompt(text: str) -> None:
            self.out.write(text)
            self.out.flush()

        return await ask_until_valid(self._print, prompt, question, choices, default)

    def close(self) -> None:
        return None


class RichView:
    """A live panel: progress bar, status, current step, screenshot, recent logs."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.title = title
        self.console = Console()
        self._state: LiveState | None = None
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        state = self._state
        if state is None:
            return Text("connecting...")
        head = Table.grid(padding=(0, 1))
        head.add_column(style="bold")
        head.add_column()
        head.add_row("status", f"{state.status}   (live via {state.transport}, "
                               f"seq {state.last_seq}, {state.elapsed:.0f} s)")
        head.add_row("progress", Group(ProgressBar(total=100, completed=state.progress,
                                                   width=40), Text(f"{state.progress}%")))
        head.add_row("step", state.current_step or "-")
        head.add_row("page", state.current_url or "-")
        head.add_row("screenshot", state.screenshot or "-")
        for cp in state.checkpoints:
            head.add_row("checkpoint", Text("\n".join(describe_checkpoint(cp)),
                                            style="yellow"))
        if state.error:
            head.add_row("error", f"[red]{state.error.get('message')}[/red]")
        logs = Table(show_header=False, box=None, padding=(0, 1))
        for entry in state.logs:
            style = {"error": "red", "warn": "yellow", "debug": "dim"}.get(
                str(entry.get("level")), "")
            logs.add_row(Text(_log_line(entry), style=style))
        return Panel(Group(head, Text(""), logs), title=self.title)

    def show(self, state: LiveState, new_logs: list[dict[str, Any]]) -> None:
        self._state = state
        self.live.update(self._render())

    def note(self, text: str) -> None:
        self.live.console.print(text)

    async def ask(self, question: str, choices: list[str], default: str) -> str:
        def say(text: str) -> None:
            self.console.print(text, markup=False, highlight=False)

        def prompt(text: str) -> None:
            self.console.print(text, end="", markup=False, highlight=False)

        self.live.stop()
        try:
            return await ask_until_valid(say, prompt, question, choices, default)
        finally:
            self.live.start()

    def close(self) -> None:
        self.live.stop()


def make_view(title: str, *, plain: bool | None = None) -> View:
    """Rich on a terminal, plain lines otherwise (or when asked)."""
    if plain is None:
        plain = not sys.stdout.isatty()
    return PlainView() if plain else RichView(title)


# --------------------------------------------------------------------------------------------
# Following
# --------------------------------------------------------------------------------------------


@dataclass
class RealtimeConfig:
    supabase_url: str
    anon_key: str
    token: str


class Follower:
    """Realtime first, `/live` polling as catch-up and fallback; decisions through the API."""

    def __init__(self, api: ApiClient, execution_id: str, *, realtime: RealtimeConfig | None,
                 view: View, decider: Decider,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.execution_id = execution_id
        self.realtime = realtime
        self.view = view
        self.decider = decider
        self.clock = clock
        self.state = LiveState(execution_id)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._client: Any = None
        self._etag: str | None = None
        self._answered_error = False
        self._gave_up = False
        self._decided: dict[str, str] = {}  # answers given but not yet accepted by the API

    # -- realtime ------------------------------------------------------------------------
    async def _subscribe(self) -> None:
        if self.realtime is None:
            self.state.transport = "polling"
            return
        from realtime import RealtimeSubscribeStates
        from supabase import AsyncClientOptions, acreate_client

        config = self.realtime
        # the client logs every failed connection attempt; the view reports the fallback
        logging.getLogger("realtime").setLevel(logging.CRITICAL)

        def on_broadcast(payload: dict[str, Any]) -> None:
            message = payload.get("payload")
            if isinstance(message, dict):
                self.state.received_live += 1
                self._queue.put_nowait(message)

        def on_state(status: Any, error: Exception | None) -> None:
            if status == RealtimeSubscribeStates.SUBSCRIBED:
                self.state.transport = "realtime"
            else:
                self.state.transport = "polling"

        try:
            # A few quick reconnects: when the socket cannot come back, /live takes over.
            options = AsyncClientOptions(auto_refresh_token=False, persist_session=False,
                                         realtime={"max_retries": 3, "initial_backoff": 0.5})
            self._client = await acreate_client(config.supabase_url, config.anon_key,
                                                options=options)
            await self._client.realtime.set_auth(config.token)
            channel = self._client.channel(f"execution:{self.execution_id}", {"config": {
                "private": True,
                "broadcast": {"ack": False, "self": False},
                "presence": {"key": "", "enabled": False},
            }})
            channel.on_broadcast("*", on_broadcast)
            await asyncio.wait_for(channel.subscribe(on_state), SUBSCRIBE_TIMEOUT_SECONDS)
        except Exception as exc:  # no socket: polling carries the whole run
            self.state.transport = "polling"
            self.view.note(f"Realtime unavailable ({type(exc).__name__}: {exc}); polling")

    async def _unsubscribe(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.remove_all_channels(), 5)
            self._client = None

    # -- polling -------------------------------------------------------------------------
    async def _poll(self) -> list[dict[str, Any]]:
        body, self._etag = await self.api.live(self.execution_id, self.state.last_seq,
                                               self._etag)
        if body is None:
            return []
        new_logs = []
        for event in body.get("events") or []:
            new_logs += self.state.apply(event)
        new_logs += self.state.apply(body["message"], snapshot=True)
        return new_logs

    # -- decisions -----------------------------------------------------------------------
    async def _decide(self) -> None:
        state = self.state
        if state.status == "waiting_checkpoint":
            for checkpoint in list(state.checkpoints):
                cid = str(checkpoint.get("id"))
                if cid in state.answered:
                    continue
                if not isinstance(self.decider, AskPerson):  # it shows the same in its question
                    self.view.note("\n".join(describe_checkpoint(checkpoint)))
                answer = (self._decided.pop(cid, None)
                          or await self.decider.checkpoint(state, checkpoint))
                if answer is None:
                    state.answered[cid] = "left open"
                    continue
                try:
                    await self.api.answer_checkpoint(cid, answer)
                    state.answered[cid] = answer
                    self.view.note(f"Checkpoint '{checkpoint.get('title')}': {answer}")
                except ApiError as exc:
                    title = checkpoint.get("title")
                    if exc.status not in (404, 409):  # e.g. rate limited: send it again
                        self.view.note(f"Checkpoint '{title}' could not be answered: {exc}")
                        self._decided[cid] = answer
                        continue
                    earlier = exc.body.get("firstDecision")
                    first = earlier.get("status") if isinstance(earlier, dict) else None
                    state.answered[cid] = str(first or exc.code)
                    self.view.note(f"Checkpoint '{title}' was answered elsewhere "
                                   f"({first or exc.code})")
        elif not state.needs_recovery:
            self._answered_error = False  # the runner moved on: the next error is a new one
        elif not self._answered_error:
            # One answer per error: the messages that follow (our own request logged, the
            # runner picking it up) still show the error until the runner leaves it.
            self._answered_error = True
            action = await self.decider.recover(state)
            if action == WAIT:
                if state.status == "failed":
                    self._gave_up = True
                return
            try:
                await self.api.action(self.execution_id, action, state.current_step)
                state.actions.append(f"{action} {state.current_step or ''}".strip())
                self.view.note(f"Recovery: {action} (step {state.current_step})")
            except ApiError as exc:
                self.view.note(f"Recovery '{action}' refused: {exc}")
                if state.status == "failed":
                    self._gave_up = True  # nothing else will move a failed execution

    def _done(self) -> bool:
        return self.state.status in FINAL or (self.state.status == "failed" and self._gave_up)

    # -- the loop ------------------------------------------------------------------------
    async def run(self, *, give_up_after: float | None = None) -> LiveState:
        """Follow until the execution is over; returns the state.

        `give_up_after` seconds without the end raises TimeoutError (the run goes on).
        """
        deadline = None if give_up_after is None else self.clock() + give_up_after
        await self._subscribe()
        try:
            self.view.show(self.state, await self._poll())
            await self._decide()
            while not self._done():
                if deadline is not None and self.clock() > deadline:
                    raise TimeoutError(f"execution {self.execution_id} still "
                                       f"{self.state.status} after {give_up_after:.0f} s")
                wait = (POLL_WHILE_LIVE_SECONDS if self.state.transport == "realtime"
                        else POLL_WITHOUT_SOCKET_SECONDS)
                new_logs: list[dict[str, Any]] = []
                try:
                    first = await asyncio.wait_for(self._queue.get(), wait)
                except TimeoutError:
                    new_logs += await self._poll()
                else:
                    batch = [first]
                    while not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                    for message in sorted(batch, key=lambda m: int(m.get("seq") or 0)):
                        if int(message.get("seq") or 0) > self.state.last_seq + 1:
                            new_logs += await self._poll()  # a gap: fill it from /live
                        new_logs += self.state.apply(message)
                self.view.show(self.state, new_logs)
                await self._decide()
            self.state.finished = time.monotonic()
            self.view.show(self.state, [])
            return self.state
        finally:
            await self._unsubscribe()
