"""`aef smoke --api URL --token JWT`: is a deployment (or `aef dev`) working end to end?

Five steps, each reported as it passes or fails, through the public API only, as a frontend
would call it:

    transform  a two-step workflow: open a page that is safe to visit, then a manual step
    execute    start it; a runner (a Fargate task, or a local subprocess) claims it
    live       poll /live (with If-None-Match) until the page was opened and the run waits
               at the manual step: the runner, its database writes and its browser all work
    logs       the execution's log lines, read back
    stop       DELETE /stop; the live runner acknowledges and the run ends `cancelled`

The page defaults to https://example.com/ (reserved for documentation, RFC 2606); pass
`--page` for a stack without internet access (CI uses the local demo site). The token may
come from AEF_SMOKE_TOKEN instead of the command line (which `ps` shows).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from local.watch import ApiClient, ApiError

DEFAULT_PAGE = "https://example.com/"
DEFAULT_TIMEOUT_SECONDS = 180.0  # a cold Fargate task takes 30-60 s to start
POLL_SECONDS = 1.0
WAITING = "waiting_checkpoint"
TERMINAL = frozenset({"completed", "failed", "cancelled"})


def smoke_workflow() -> dict[str, Any]:
    """Open `{{page_url}}`, then a manual step that holds the run until it is stopped."""
    return {
        "meta": {"id": "aef-smoke", "title": "AEF smoke test", "version": "1.0.0",
                 "goal": "Prove a deployment runs a browser workflow end to end"},
        "execution": {
            "variables": {"page_url": "A page that is safe to visit"},
            "workflow": {
                "nodes": [
                    {"id": "open_page", "type": "atomic_task", "label": "Open the page",
                     "intent": "Open the page given as page_url",
                     "actions": [{"type": "navigate", "url": "{{page_url}}"}]},
                    {"id": "hold", "type": "manual_task", "label": "Hold until stopped",
                     "intent": "Nothing to do: the smoke test stops the run here",
                     "actions": []},
                ],
                "flow": [{"from": "open_page", "to": "hold"}],
            },
        },
    }


class SmokeFailed(Exception):
    """A step did not do what a working deployment does."""


@dataclass
class Report:
    """Prints each step's outcome; remembers what needs cleaning up."""

    say: Callable[[str], None] = print
    passed: list[str] = field(default_factory=list)

    async def step(self, name: str, run: Callable[[], Awaitable[str]]) -> None:
        started = time.monotonic()
        try:
            detail = await run()
        except (ApiError, SmokeFailed, TimeoutError, httpx.HTTPError) as exc:
            self.say(f"FAIL {name:<9} {exc} ({time.monotonic() - started:.1f} s)")
            raise SmokeFailed(f"{name}: {exc}") from exc
        self.passed.append(name)
        self.say(f"ok   {name:<9} {detail} ({time.monotonic() - started:.1f} s)")


async def run_smoke(api_url: str, token: str, *, page: str = DEFAULT_PAGE,
                    wait_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                    say: Callable[[str], None] = print) -> int:
    """Run the five steps; 0 when all pass, 1 otherwise (a started run is stopped anyway)."""
    api = ApiClient(api_url, token)
    report = Report(say)
    state: dict[str, Any] = {}
    try:
        await report.step("transform", lambda: _transform(api, state))
        await report.step("execute", lambda: _execute(api, state, page))
        await report.step("live", lambda: _live(api, state, page, wait_seconds))
        await report.step("logs", lambda: _logs(api, state))
        await report.step("stop", lambda: _stop(api, state))
    except SmokeFailed:
        await _clean_up(api, report, state)
        say(f"smoke: FAILED after {len(report.passed)} of 5 steps")
        return 1
    finally:
        await api.close()
    say(f"smoke: OK, execution {state['execution_id']} ran and stopped")
    return 0


async def _transform(api: ApiClient, state: dict[str, Any]) -> str:
    created = await api.transform(smoke_workflow(), {"checkpointMode": "none"})
    state["document_id"] = str(created["aefDocumentId"])
    state["execution_id"] = str(created["executionId"])
    return (f"document {state['document_id']}, execution {state['execution_id']}, "
            f"{created.get('estimatedStepCount')} steps")


async def _execute(api: ApiClient, state: dict[str, Any], page: str) -> str:
    started = await api.execute(state["document_id"], execution_id=state["execution_id"],
                                variables={"page_url": page},
                                idempotency_key=f"aef-smoke-{uuid.uuid4()}")
    state["started"] = True
    if started["status"] != "queued":
        raise SmokeFailed(f"the execution is {started['status']}, not queued "
                          "(the runner could not be launched; see its logs)")
    return f"queued; live on channel {started['channel']}"


async def _live(api: ApiClient, state: dict[str, Any], page: str, wait_seconds: float) -> str:
    """Poll until the run waits at the manual step; checks the ETag answers 304 unchanged."""
    deadline = time.monotonic() + wait_seconds
    etag: str | None = None
    statuses: list[str] = []
    unchanged = 0
    while time.monotonic() < deadline:
        body, etag = await api.live(state["execution_id"], 0, etag)
        if body is None:
            unchanged += 1
        else:
            message = body["message"]
            status = message["execution"]["status"]
            if not statuses or statuses[-1] != status:
                statuses.append(status)
            if status == WAITING:
                url = message["browser"].get("currentUrl") or ""
                if urlsplit(url).hostname != urlsplit(page).hostname:
                    raise SmokeFailed(f"the browser is at {url!r}, not at {page!r}")
                shot = "with" if message["browser"].get("screenshot") else "without"
                return (f"{' -> '.join(statuses)}; page opened ({shot} screenshot), "
                        f"{unchanged} unchanged polls answered 304")
            if status in TERMINAL:
                error = (message.get("error") or {}).get("message", "")
                raise SmokeFailed(f"the run ended {status} before the manual step: {error}")
        await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"no runner reached the manual step in {wait_seconds:.0f} s "
                       f"(statuses seen: {' -> '.join(statuses) or 'none'})")


async def _logs(api: ApiClient, state: dict[str, Any]) -> str:
    entries = await api.all_logs(state["execution_id"])
    completed = [e for e in entries if e.get("stepId") == "open_page"
                 and str(e.get("message", "")).startswith("Step completed")]
    if not completed:
        raise SmokeFailed(f"{len(entries)} log lines, none says the page step completed")
    errors = sum(1 for e in entries if e.get("level") == "error")
    return f"{len(entries)} lines ({errors} errors), the page step completed"


async def _stop(api: ApiClient, state: dict[str, Any]) -> str:
    stopped = await api.stop(state["execution_id"])
    state["stopped"] = True
    body, _ = await api.live(state["execution_id"], 0)
    status = body["message"]["execution"]["status"] if body else "unknown"
    if stopped.get("status") != "stopped" or status != "cancelled":
        raise SmokeFailed(f"stop answered {stopped}, the execution is {status}")
    how = ("the runner acknowledged" if stopped.get("cleanup") == "completed"
           else "forced: the runner did not acknowledge in time")
    return f"cancelled ({how})"


async def _clean_up(api: ApiClient, report: Report, state: dict[str, Any]) -> None:
    """Stop a run the smoke test started and did not stop (best effort)."""
    if state.get("started") and not state.get("stopped"):
        try:
            await api.stop(state["execution_id"])
            report.say(f"     (execution {state['execution_id']} stopped)")
        except (ApiError, httpx.HTTPError):
            report.say(f"     (could not stop execution {state['execution_id']})")
