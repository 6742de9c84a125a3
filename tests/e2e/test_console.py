"""The operator console in a real Chromium against `aef dev`, used the way a person uses it.

Two long scenarios (Chromium is heavy on a small machine):

1. Sign in with supabase-js (the local stack answers the password grant), upload the demo
   workflow, start it from the inputs form, watch screenshots arrive over Realtime, approve a
   checkpoint by keyboard, skip one, see it complete; history and paged logs; a second run is
   stopped by keyboard; another user sees none of it.
2. The Realtime websocket blocked: the page says it polls, sends If-None-Match and gets 304s;
   unblocked, supabase-js reconnects and the page catches up; every event applied once, in
   order. A step escalates; the person takes over by
   clicking on the screenshot and typing; the demo CRM proves the input landed; release; the
   run completes.

axe-core (console/node_modules) checks each page for serious and critical violations.
Screenshots of every stage go to tests/artifacts/console/ (printed), to be looked at.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    Page,
    Request,
    Response,
    Route,
    WebSocketRoute,
    async_playwright,
)
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from aef.settings import get_settings
from local.auth import DEV_PASSWORD
from local.demo import WORKFLOW_PATH
from local.demo.seed import DEMO_EMAIL, DEMO_PASSWORD
from tests.demo.helpers import CHROMIUM_ARGS
from tests.e2e.conftest import RunningStack
from tests.waiting import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
TAKEOVER_WORKFLOW = ROOT / "tests" / "fixtures" / "workflows" / "console-takeover.json"
RUN_TIMEOUT_MS = 300_000
POLL_HELD_S = 3.0  # how long after Realtime is let through a poll on its way is held


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert AXE.is_file(), "run `npm ci` in console/ (scripts/bootstrap.sh does)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {ARTIFACTS}")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=get_settings().chromium_path or "/usr/bin/chromium",
            args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


async def new_page(browser: Browser) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    return page


async def http(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, url, **kwargs)


async def snap(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def no_serious_violations(page: Page, where: str) -> None:
    """axe-core on the page as it is now: nothing serious or critical."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [f"{v['id']} ({v['impact']}): {v['help']} at "
           f"{[n['target'] for n in v['nodes']][:3]}: {v['nodes'][0].get('failureSummary')}"
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{where}: " + "; ".join(bad)


async def sign_in(page: Page, stack: RunningStack, email: str) -> None:
    await page.goto(f"{stack.url}/console/")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(DEV_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Documents", exact=True).wait_for()
    await page.get_by_text(f"Signed in as {email}").wait_for()


async def upload(page: Page, path: Path, title: str) -> str:
    await page.get_by_label("SOP or workflow file (JSON)").set_input_files(str(path))
    await page.get_by_role("button", name="Upload and transform").click()
    await page.get_by_role("heading", name=title, exact=True).wait_for()
    return page.url.rsplit("/", 1)[-1].split("?", 1)[0]


async def start_run(page: Page, *, credentials: dict[str, str] | None = None) -> str:
    for name, value in (credentials or {}).items():
        field = page.locator(f"#input-{name}")
        assert await field.get_attribute("type") == "password"  # credentials are masked
        await field.fill(value)
    await page.get_by_role("button", name="Start execution").click()
    await page.wait_for_url("**/console/#/executions/**")
    return page.url.split("#/executions/", 1)[1].split("?", 1)[0]


async def status_of(page: Page) -> str:
    return str(await page.locator("#exec-status .badge").get_attribute("data-status"))


async def wait_status(page: Page, *statuses: str) -> None:
    await page.wait_for_function(
        "(wanted) => wanted.includes(document.querySelector('#exec-status .badge')"
        "?.dataset.status)", arg=list(statuses), timeout=RUN_TIMEOUT_MS)


async def shot_count(page: Page) -> int:
    return int(await page.locator("#screenshot").get_attribute("data-count") or 0)


@pytest.mark.timeout(900)
async def test_sign_in_run_answer_and_watch(stack: RunningStack, browser: Browser) -> None:
    (await http("POST", f"{stack.url}/demo/reset")).raise_for_status()
    page = await new_page(browser)
    await page.goto(f"{stack.url}/console/")
    await page.get_by_role("heading", name="Sign in", exact=True).wait_for()
    await no_serious_violations(page, "sign-in")
    await snap(page, "01-sign-in")
    await page.get_by_label("Email").fill("demo@aef.local")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("alert").filter(has_text="Invalid login credentials").wait_for()
    await sign_in(page, stack, "demo@aef.local")
    await no_serious_violations(page, "documents")
    await snap(page, "02-documents")

    title = json.loads(WORKFLOW_PATH.read_text())["meta"]["title"]
    document_id = await upload(page, WORKFLOW_PATH, title)
    tree = page.locator("section[aria-labelledby=plan-heading]")
    assert await tree.locator(".mark.checkpoint").count() == 2  # update / add investor
    assert await tree.locator(".mark.credential").count() >= 2
    assert await page.locator("#input-base_url").input_value() == stack.url
    await no_serious_violations(page, "document")
    await snap(page, "03-document-and-start-form")

    execution_id = await start_run(page, credentials={"demo_email": DEMO_EMAIL,
                                                      "demo_password": DEMO_PASSWORD})
    await page.locator("#connection[data-mode=realtime]").wait_for()
    answered: list[str] = []
    while len(answered) < 3:
        panel = page.locator("#checkpoint-panel")
        await page.wait_for_function(
            "(done) => { const p = document.querySelector('#checkpoint-panel');"
            " return (p && !p.hidden && p.dataset.id && !done.includes(p.dataset.id))"
            " || ['completed','failed','cancelled'].includes("
            "document.querySelector('#exec-status .badge')?.dataset.status) }",
            arg=answered, timeout=RUN_TIMEOUT_MS)
        if await status_of(page) in ("completed", "failed", "cancelled"):
            break
        checkpoint_id = str(await panel.get_attribute("data-id"))
        if not answered:
            text = await panel.inner_text()
            assert "null" not in text and "undefined" not in text, text
            await no_serious_violations(page, "checkpoint")
            await snap(page, "04-checkpoint")
            # keyboard only: the panel puts focus on its first answer, Approve
            focused = await page.evaluate("document.activeElement.dataset.response")
            assert focused == "approve"
            await page.keyboard.press("Enter")
        elif len(answered) == 1:
            await panel.get_by_role("button", name="Skip").click()
        else:
            await panel.get_by_role("button", name="Approve").click()
        answered.append(checkpoint_id)
        await page.wait_for_function(
            "(id) => { const p = document.querySelector('#checkpoint-panel');"
            " return p.hidden || p.dataset.id !== id }", arg=checkpoint_id)
    await wait_status(page, "completed", "failed", "cancelled")
    await snap(page, "05-completed")
    assert await status_of(page) == "completed"
    assert len(answered) == 3
    assert await shot_count(page) >= 3  # distinct screenshots shown as they arrived
    assert "Completed" in await page.locator("#exec-status").inner_text()
    crm = (await http("GET", f"{stack.url}/demo/state")).json()
    assert crm["summary"]["added"] + crm["summary"]["updated"] == 2  # one of three skipped

    await page.get_by_role("link", name="History").click()
    row = page.locator("#executions tbody tr").filter(has_text=title).first
    await row.get_by_text("Completed").wait_for()
    # the first start ran the execution the transform made: no idle one left behind
    # (other tests share this stack and user: only this document's executions count)
    mine = page.locator("#executions tbody tr").filter(has_text=title)
    assert await mine.locator("[data-status=idle]").count() == 0
    await no_serious_violations(page, "history")
    await snap(page, "06-history")
    await page.goto(f"{stack.url}/console/#/executions/{execution_id}/logs")
    await page.locator("#logs tbody tr").first.wait_for()
    first_page = await page.locator("#logs tbody tr").first.inner_text()
    assert await page.locator("#logs tbody tr").count() == 50
    await page.get_by_role("button", name="Next page").click()
    await page.get_by_text("Page 2").wait_for()
    assert await page.locator("#logs tbody tr").first.inner_text() != first_page
    await no_serious_violations(page, "logs")
    await snap(page, "07-logs")

    # a second click on Start is a second run (a fresh Idempotency-Key); stop it by keyboard
    await page.goto(f"{stack.url}/console/#/documents/{document_id}")
    await page.get_by_role("checkbox", name="Review the CRM").uncheck()  # step selection
    async with page.expect_request("**/api/aef/execute") as sent:
        second = await start_run(page, credentials={"demo_email": DEMO_EMAIL,
                                                    "demo_password": DEMO_PASSWORD})
    request = await sent.value
    body = request.post_data_json
    assert "review_crm" not in body["stepIds"] and "collect_inbox" in body["stepIds"]
    assert "executionId" not in body  # the transform's execution ran the first time
    assert (await request.all_headers())["idempotency-key"]
    assert second != execution_id
    await page.locator("#exec-status .badge").wait_for()
    await page.locator("h1").click()  # from the heading, Tab to the Stop button
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "stop":
            break
    assert await page.evaluate("document.activeElement.id") == "stop"
    await snap(page, "08a-stop-focused")  # the focus ring is visible
    await page.keyboard.press("Enter")  # the confirmation dialog is accepted
    await wait_status(page, "cancelled")
    await no_serious_violations(page, "stopped execution")
    await snap(page, "08-stopped")
    assert not page.errors  # type: ignore[attr-defined]

    # another user sees none of it
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("heading", name="Sign in", exact=True).wait_for()
    await sign_in(page, stack, "reviewer@aef.local")
    await page.locator("#no-documents").wait_for()
    await page.get_by_role("link", name="History").click()
    await page.locator("#no-executions").wait_for()
    await page.goto(f"{stack.url}/console/#/executions/{execution_id}")
    await page.get_by_role("alert").wait_for()
    assert "not found" in (await page.get_by_role("alert").inner_text()).lower()
    await page.goto(f"{stack.url}/console/#/documents/{document_id}")
    await page.get_by_role("alert").wait_for()
    await snap(page, "09-other-user")
    await page.context.close()


async def field_point(browser: Browser, url: str, selector: str) -> tuple[float, float]:
    """Where `selector` is on the runner's 1280x800 viewport (the screenshot's pixels)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    probe = await context.new_page()
    await probe.goto(url)
    box = await probe.locator(selector).bounding_box()
    await context.close()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


async def click_screenshot_at(page: Page, x: float, y: float) -> None:
    """Click the console's screenshot where the viewport point (x, y) is shown."""
    shot = page.locator("#screenshot")
    box = await shot.bounding_box()
    natural = await shot.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert box is not None
    await shot.click(position={"x": x * box["width"] / natural[0],
                               "y": y * box["height"] / natural[1]})


async def send_after_fresh_shot(page: Page, action: Any) -> None:
    """Do `action`, then wait for a screenshot newer than the one shown before it."""
    before = await shot_count(page)
    await action()
    await page.wait_for_function(
        "(n) => Number(document.querySelector('#screenshot').dataset.count) > n", arg=before)


@pytest.mark.timeout(600)
async def test_polling_fallback_and_takeover(stack: RunningStack, browser: Browser) -> None:
    (await http("POST", f"{stack.url}/demo/reset")).raise_for_status()
    name_at = await field_point(browser, f"{stack.url}/crm/new", "input[name='name']")
    email_at = await field_point(browser, f"{stack.url}/crm/new", "input[name='email']")
    page = await new_page(browser)
    blocked = True
    sockets: list[str] = []  # what became of each websocket the page opened, for a failure
    let_through, let_through_at = asyncio.Event(), 0.0  # the first socket after the block

    async def realtime_socket(ws: WebSocketRoute) -> None:
        nonlocal let_through_at
        sockets.append("refused" if blocked else "let through")
        if blocked:
            await ws.close()
            return
        if not let_through.is_set():
            let_through_at = time.monotonic()
            let_through.set()
        ws.connect_to_server()

    async def held_poll(route: Route) -> None:
        # a poll on its way while Realtime comes back answers after the subscription: the page
        # must stay live, not fall back to polling because an old poll came home
        await let_through.wait()
        await asyncio.sleep(let_through_at + POLL_HELD_S - time.monotonic())
        await route.continue_()

    await page.context.route_web_socket("**/realtime/v1/websocket**", realtime_socket)
    polls: list[tuple[str | None, int]] = []
    poll_requests: list[str] = []

    async def seen(response: Response) -> None:
        request: Request = response.request
        if "/api/aef/live/" in request.url and "?after=" in request.url:
            headers = await request.all_headers()
            polls.append((headers.get("if-none-match"), response.status))

    page.on("response", seen)
    page.on("request", lambda request: poll_requests.append(request.url)
            if "/api/aef/live/" in request.url and "?after=" in request.url else None)
    await sign_in(page, stack, "demo@aef.local")
    await upload(page, TAKEOVER_WORKFLOW, "Add a CRM record by hand")
    execution_id = await start_run(page)
    connection = page.locator("#connection[data-mode=polling]")
    await connection.wait_for()
    assert "unavailable" in await connection.inner_text()

    recovery = page.locator("#recovery-panel")
    await recovery.get_by_role("button", name="Take over the browser").wait_for(
        timeout=RUN_TIMEOUT_MS)
    await no_serious_violations(page, "recovery")
    await snap(page, "10-recovery-polling")
    # nothing changes while the run waits for a person: the next polls are answered 304
    await eventually(lambda: any(tag and status == 304 for tag, status in polls), within=15,
                     interval=0.1, in_thread=False, what=f"a 304 poll answer: {polls}")
    # the websocket comes back: supabase-js reconnects, the page says so and stops polling
    await page.route("**/api/aef/live/*?after=*", held_poll)
    blocked = False
    try:
        await page.locator("#connection[data-mode=realtime]").wait_for(timeout=60_000)
    except PlaywrightTimeoutError:
        seen_by_page = await page.evaluate(
            "() => ({ realtime: window.__aefRealtime(), mode: window.__aefExecution.mode,"
            " subscribed: window.__aefExecution.subscribed })")
        raise AssertionError(f"no Realtime within 60 s of the socket's return: page {seen_by_page}"
                             f", sockets {sockets}\n{stack.log_tail()}") from None
    poll_requested = len(poll_requests)
    await send_after_fresh_shot(page, lambda: recovery.get_by_role(
        "button", name="Take over the browser").click())
    takeover = page.locator("#takeover-panel")
    await takeover.get_by_role("heading", name="You are driving the browser").wait_for()
    await no_serious_violations(page, "takeover")

    await send_after_fresh_shot(page, lambda: click_screenshot_at(page, *name_at))
    await takeover.get_by_label("Type text").fill("Ada Takeover")
    await send_after_fresh_shot(page, lambda: takeover.get_by_role("button", name="Type").click())
    await send_after_fresh_shot(page, lambda: click_screenshot_at(page, *email_at))
    await takeover.get_by_label("Type text").fill("ada@takeover.example")
    await send_after_fresh_shot(page, lambda: takeover.get_by_role("button", name="Type").click())
    await snap(page, "11-takeover")
    await takeover.get_by_label("Press a key").fill("Enter")
    await takeover.get_by_role("button", name="Press").click()

    def typed_record_saved() -> bool:  # the demo site's own state
        crm = httpx.get(f"{stack.url}/demo/state", timeout=10).json()["crm"]
        return any(r["name"] == "Ada Takeover" and r["email"] == "ada@takeover.example"
                   for r in crm)
    await eventually(typed_record_saved, within=30, interval=0.5,
                     what="the typed record in the demo CRM")

    await takeover.get_by_role("button", name="Release the browser").click()
    await wait_status(page, "completed", "failed", "cancelled")
    await snap(page, "12-completed-after-takeover")
    assert await status_of(page) == "completed"
    assert await page.locator("#connection").inner_text() == "The run has ended."

    # polled with If-None-Match, answered 304 while nothing changed; after the reconnect only
    # the one catch-up request
    assert all(status in (200, 304) for _, status in polls), polls
    assert len(poll_requests) <= poll_requested + 1, poll_requests[poll_requested:]
    # every event once, in order: the applied sequence numbers have no gap and no repeat
    applied = await page.evaluate("window.__aefExecution.seen")
    assert applied == list(range(applied[0], applied[-1] + 1)), applied
    shown = [int(i) for i in await page.locator("#log-stream li").evaluate_all(
        "items => items.map(li => li.dataset.id)")]
    access = await page.evaluate(
        "() => JSON.parse(localStorage.getItem(Object.keys(localStorage)"
        ".find(k => k.endsWith('-auth-token')))).access_token")
    live = (await http("GET", f"{stack.url}/api/aef/live/{execution_id}?after=0",
                       headers={"Authorization": f"Bearer {access}"})).json()
    broadcast = list(dict.fromkeys(entry["id"] for event in live["events"]
                                   for entry in event["logs"]))
    assert shown == broadcast  # each event's log lines once, in order
    assert not page.errors  # type: ignore[attr-defined]
    await page.context.close()
