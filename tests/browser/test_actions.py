"""Every action type against real Chromium and the local page server."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from aef.models import Action as WireAction
from aef.settings import Settings
from runner import browser as browser_module
from runner.actions import (
    ActionContext,
    Blocked,
    NeedsHuman,
    StepError,
    TransientError,
    VerificationFailed,
    goto,
    normalize_action,
    perform,
)
from runner.browser import BrowserSession, capture_jpeg, open_browser, process_alive
from runner.redaction import MASK, Redactor
from tests.browser.conftest import PageServer, local_resolve, loopback_settings

pytestmark = pytest.mark.browser

SECRET = "hunter2-S3cr3t!"

FORM = """
<form id="f" onsubmit="event.preventDefault(); window.events.push('submit')">
  <label for="email">Email</label><input id="email" name="email">
  <label for="password">Password</label><input id="password" type="password">
  <label for="stage">Stage</label>
  <select id="stage"><option value="pre">Pre-seed</option><option value="seed">Seed</option>
  </select>
  <label><input type="checkbox" id="agree"> I agree</label>
  <input id="keys" onkeydown="window.events.push('key:' + event.key)">
  <button type="submit" id="go" onclick="window.events.push('click')">Go</button>
</form>
<div style="height: 3000px"></div><p id="bottom">bottom</p>
<script>window.events = [];</script>
"""


@pytest.fixture
def ctx(session: BrowserSession) -> ActionContext:
    return ActionContext.for_session(session, variables={"name": "Ada"},
                                     secrets={"password": SECRET})


async def _open(page: Page, page_server: PageServer, path: str, body: str) -> str:
    url = page_server.page(path, body)
    await page.goto(url)
    return url


def test_normalize_accepts_the_wire_model_and_dicts() -> None:
    wire = WireAction(type="wait", selector="#x", timeout_ms=1500, url_contains="/done")
    from_model = normalize_action(wire)
    from_camel = normalize_action({"type": "wait", "selector": "#x", "timeoutMs": 1500,
                                   "urlContains": "/done"})
    from_snake = normalize_action({"type": "wait", "selector": "#x", "timeout_ms": 1500,
                                   "url_contains": "/done"})
    assert from_model == from_camel == from_snake
    assert from_model is wire and isinstance(from_camel, WireAction)  # one Action model
    assert from_model.timeout_ms == 1500.0
    with pytest.raises(StepError):
        normalize_action({"type": "teleport"})


async def test_navigate_and_http_status_classification(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    page = session.page
    ok = page_server.page("/actions/ok", "<p>fine</p>")
    result = await perform(page, {"type": "navigate", "url": ok}, ctx)
    assert result.status == 200 and result.url == ok and result.description == f"Opened {ok}"
    broken = page_server.add("/actions/500", "oops", status=500)
    with pytest.raises(TransientError, match="HTTP 500"):
        await perform(page, {"type": "navigate", "url": broken}, ctx)
    missing = page_server.url("/actions/missing")
    with pytest.raises(StepError, match="HTTP 404") as info:
        await perform(page, {"type": "navigate", "url": missing}, ctx)
    assert not isinstance(info.value, TransientError)
    # Nothing listens on port 9 of loopback: a network error, worth a retry.
    with pytest.raises(TransientError):
        await perform(page, {"type": "navigate", "url": "http://127.0.0.1:9/"}, ctx)


async def test_a_failed_navigation_leaves_the_page_ready_for_the_next(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    """Chromium commits a failed navigation's error page after the failure is reported; the
    action waits for it, so a navigation right after it is not interrupted."""
    page = session.page
    ok = page_server.page("/actions/ready", "<p>ready</p>")
    for _ in range(5):
        # The second failure starts from the first one's error page: the URL alone cannot
        # tell that its own error page has landed.
        for _ in range(2):
            with pytest.raises(TransientError, match="ERR_"):
                await perform(page, {"type": "navigate", "url": "http://127.0.0.1:9/"}, ctx)
            assert page.url.startswith("chrome-error://")
        await page.goto(ok)
        assert page.url == ok


async def test_goto_survives_an_earlier_failures_late_error_page(
    session: BrowserSession, page_server: PageServer
) -> None:
    """A bare page.goto failure (a page script, an older call) leaves its error page pending;
    runner.actions.goto still lands on its own URL and returns its response."""
    page = session.page
    ok = page_server.page("/actions/after-error", "<p>after</p>")
    for _ in range(5):
        with pytest.raises(PlaywrightError):
            await page.goto("http://127.0.0.1:9/")
        response = await goto(page, ok, timeout_ms=10_000)
        assert response is not None and response.status == 200
        assert page.url == ok


async def test_element_actions(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    page = session.page
    await _open(page, page_server, "/actions/form", FORM)
    r = await perform(page, {"type": "fill", "selector": "#email", "value": "{{name}}@x.io"},
                      ctx)
    assert await page.input_value("#email") == "Ada@x.io"
    assert r.description == "Filled #email with Ada@x.io"
    r = await perform(page, {"type": "type", "selector": "#keys", "value": "ab"}, ctx)
    assert await page.input_value("#keys") == "ab"
    assert r.description.startswith("Typed into #keys")
    await perform(page, {"type": "select", "selector": "#stage", "value": "Seed"}, ctx)
    assert await page.input_value("#stage") == "seed"
    with pytest.raises(StepError):
        await perform(page, {"type": "select", "selector": "#stage", "value": "Series Z",
                             "timeoutMs": 500}, ctx)
    await perform(page, {"type": "check", "selector": "#agree"}, ctx)
    assert await page.is_checked("#agree")
    await perform(page, {"type": "uncheck", "selector": "#agree"}, ctx)
    assert not await page.is_checked("#agree")
    await perform(page, {"type": "press", "selector": "#keys", "key": "Enter"}, ctx)
    await perform(page, {"type": "click", "selector": "#go"}, ctx)
    events = await page.evaluate("window.events")
    assert "key:Enter" in events and "click" in events
    await perform(page, {"type": "scroll", "selector": "#bottom"}, ctx)
    assert await page.evaluate("window.scrollY") > 1000
    await perform(page, {"type": "scroll", "value": "top"}, ctx)
    assert await page.evaluate("window.scrollY") == 0
    r = await perform(page, {"type": "scroll", "value": "250"}, ctx)
    assert await page.evaluate("window.scrollY") == 250 and r.description == "Scrolled 250px"


async def test_waits_and_the_selector_timeout_decision(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    page = session.page
    await _open(page, page_server, "/actions/wait", """
      <script>
        setTimeout(() => { const p = document.createElement('p'); p.id = 'late';
          p.textContent = 'here'; document.body.appendChild(p); }, 300);
        setTimeout(() => history.pushState({}, '', '?step=done'), 300);
      </script>""")
    await perform(page, {"type": "wait", "selector": "#late"}, ctx)
    await perform(page, {"type": "wait", "urlContains": "step=done"}, ctx)
    await perform(page, {"type": "wait", "state": "domcontentloaded"}, ctx)
    r = await perform(page, {"type": "wait", "timeoutMs": 50}, ctx)
    assert r.description == "Waited 50 ms"
    # A selector that never appears: transient on the first attempt, a step error after.
    with pytest.raises(TransientError):
        await perform(page, {"type": "click", "selector": "#never", "timeoutMs": 300}, ctx)
    ctx.attempt = 2
    with pytest.raises(StepError) as info:
        await perform(page, {"type": "click", "selector": "#never", "timeoutMs": 300}, ctx)
    assert info.value.code == "element_not_found"
    assert not isinstance(info.value, TransientError)


async def test_extract_text_attributes_lists_and_schema(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    page = session.page
    await _open(page, page_server, "/actions/extract", """
      <h1 id="title">  Investor   Inbox </h1>
      <a id="crm" href="/crm/42">CRM</a>
      <ul><li class="mail">Seed round - Acme</li><li class="mail">Series A - Beta</li>
          <li class="mail">Newsletter</li></ul>
      <section id="card">
        <span data-field="company">Acme Ventures</span>
        <input name="email" value="lead@acme.vc">
        <label for="stage">Stage</label><input id="stage" value="Seed">
        <dl><dt>Check size</dt><dd>$500k</dd></dl>
        <p>Partner: Jane Doe</p>
      </section>
      <table><tr class="row"><td data-field="name">A</td><td data-field="amount">1</td></tr>
             <tr class="row"><td data-field="name">B</td><td data-field="amount">2</td></tr>
      </table>""")
    r = await perform(page, {"type": "extract", "selector": "#title", "variable": "title"}, ctx)
    assert r.value == "Investor Inbox" and ctx.variables["title"] == "Investor Inbox"
    r = await perform(page, {"type": "extract", "selector": "#crm", "attribute": "href"}, ctx)
    assert r.value == "/crm/42"
    r = await perform(page, {"type": "extract", "selector": "li.mail", "many": True,
                             "variable": "subjects"}, ctx)
    assert ctx.variables["subjects"] == ["Seed round - Acme", "Series A - Beta", "Newsletter"]
    assert r.description == "Extracted 3 items from li.mail into subjects"
    r = await perform(page, {"type": "extract", "selector": "li.mail", "many": True,
                             "pattern": r"^(.*?) - "}, ctx)
    assert r.value == ["Seed round", "Series A", None]
    r = await perform(page, {"type": "extract", "selector": "#nothing", "many": True}, ctx)
    assert r.value == []
    schema = {"type": "object", "properties": {"company": {}, "email": {}, "stage": {},
                                               "check_size": {}, "partner": {}, "phone": {}}}
    r = await perform(page, {"type": "extract", "selector": "#card", "schema": schema,
                             "variable": "investor"}, ctx)
    assert ctx.variables["investor"] == {"company": "Acme Ventures", "email": "lead@acme.vc",
                                         "stage": "Seed", "check_size": "$500k",
                                         "partner": "Jane Doe", "phone": None}
    r = await perform(page, {"type": "extract", "selector": "tr.row", "many": True,
                             "schema": ["name", "amount"]}, ctx)
    assert r.value == [{"name": "A", "amount": "1"}, {"name": "B", "amount": "2"}]


async def test_verify_passes_and_fails_clearly(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    page = session.page
    url = await _open(page, page_server, "/actions/verify", "<p id='msg'>Saved 3 records</p>")
    r = await perform(page, {"type": "verify", "urlContains": "/actions/verify",
                             "selector": "#msg", "pattern": r"Saved \d+ records"}, ctx)
    assert r.description.startswith("Verified:")
    with pytest.raises(VerificationFailed, match="does not contain '/inbox'"):
        await perform(page, {"type": "verify", "urlContains": "/inbox", "timeoutMs": 300}, ctx)
    with pytest.raises(VerificationFailed, match="#missing is not visible"):
        await perform(page, {"type": "verify", "selector": "#missing", "timeoutMs": 300}, ctx)
    with pytest.raises(VerificationFailed, match="does not match /Deleted/"):
        await perform(page, {"type": "verify", "selector": "#msg", "pattern": "Deleted",
                             "timeoutMs": 300}, ctx)
    assert page.url == url


async def test_upload_is_confined_to_the_work_dir(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext, tmp_path: Path
) -> None:
    page = session.page
    await _open(page, page_server, "/actions/upload", "<input type='file' id='file'>")
    (session.work_dir / "report.csv").write_text("a,b\n1,2\n")
    r = await perform(page, {"type": "upload", "selector": "#file", "value": "report.csv"}, ctx)
    assert r.description == "Uploaded report.csv to #file"
    assert await page.evaluate("document.querySelector('#file').files[0].name") == "report.csv"
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    link = session.work_dir / "sneaky.txt"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    for escape in ("../../etc/passwd", "/etc/passwd", str(outside), "sneaky.txt"):
        with pytest.raises(StepError) as info:
            await perform(page, {"type": "upload", "selector": "#file", "value": escape}, ctx)
        assert info.value.code == "path_outside_work_dir"


async def test_download_lands_in_the_work_dir(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    page = session.page
    file_url = page_server.add("/actions/export.csv", "name,stage\nAcme,Seed\n",
                               content_type="text/csv",
                               headers={"Content-Disposition":
                                        'attachment; filename="../../export.csv"'})
    await _open(page, page_server, "/actions/download", f"<a id='dl' href='{file_url}'>CSV</a>")
    r = await perform(page, {"type": "download", "selector": "#dl", "variable": "csv"}, ctx)
    saved = Path(r.value)
    # The hostile "../../" in the suggested name cannot leave the downloads folder.
    assert saved.parent == session.downloads_dir and saved.name.endswith("export.csv")
    assert saved.read_bytes() == b"name,stage\nAcme,Seed\n"  # noqa: ASYNC240
    assert ctx.variables["csv"] == str(saved)
    r = await perform(page, {"type": "download", "url": file_url}, ctx)
    assert Path(r.value) == session.downloads_dir / f"{saved.stem} (1).csv"
    with pytest.raises(Blocked):
        await perform(page, {"type": "download", "url": "http://10.0.0.1/x.csv"}, ctx)


async def test_act_grounds_substitutes_secrets_and_caches_without_them(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    page = session.page
    await _open(page, page_server, "/actions/act", FORM)
    action = {"type": "act", "instruction": "Type {{password}} into the Password field"}
    r = await perform(page, action, ctx)
    assert await page.input_value("#password") == SECRET
    assert SECRET not in r.description and MASK in r.description
    assert r.resolution is not None and r.resolution["value"] == "{{password}}"
    assert SECRET not in repr(r.to_dict())
    # Replay from the cache on a fresh page: no grounding needed, same element.
    await page.reload()
    cached = dict(r.resolution)
    replay = await perform(page, action, ctx, cached=cached)
    assert replay.resolution is not None and replay.resolution["source"] == "cache"
    assert await page.input_value("#password") == SECRET
    # Even if the caller substituted the secret into the instruction first, the cached
    # resolution gets the placeholder back.
    leaked = {"type": "act", "instruction": f"Type {SECRET} into the Password field"}
    r = await perform(page, leaked, ctx)
    assert r.resolution is not None and SECRET not in repr(r.resolution)
    # An ambiguous instruction asks for a person.
    await _open(page, page_server, "/actions/act-ambiguous",
                "<button>Delete</button><button>Delete</button>")
    with pytest.raises(NeedsHuman) as info:
        await perform(page, {"type": "act", "instruction": "Click Delete"}, ctx)
    assert info.value.code == "needs_human"
    assert len(info.value.extra["escalation"]["candidates"]) == 2


async def test_cached_resolution_is_not_replayed_for_another_loop_item(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext
) -> None:
    """A resolution grounded for one item's value must not type that value for the next."""
    page = session.page
    await _open(page, page_server, "/actions/act-loop", FORM)
    action = {"type": "act", "instruction": "Type {{focus}} into the Email field"}
    ctx.variables["focus"] = "Climate tech"
    first = await perform(page, action, ctx)
    assert await page.input_value("#email") == "Climate tech"
    ctx.variables["focus"] = "Developer tools"
    second = await perform(page, action, ctx, cached=dict(first.resolution or {}))
    assert await page.input_value("#email") == "Developer tools"
    assert second.resolution is not None and second.resolution["source"] != "cache"


async def test_secrets_never_appear_in_descriptions_errors_or_logs(
    session: BrowserSession, page_server: PageServer, ctx: ActionContext,
    caplog: pytest.LogCaptureFixture
) -> None:
    page = session.page
    await _open(page, page_server, "/actions/secret", FORM + f"<p id='echo'>{SECRET}</p>")
    r = await perform(page, {"type": "fill", "selector": "#password",
                             "value": "{{password}}"}, ctx)
    assert r.description == f"Filled #password with {MASK}"
    r = await perform(page, {"type": "fill", "selector": "#email",
                             "credentialField": "password"}, ctx)
    assert SECRET not in r.description
    r = await perform(page, {"type": "extract", "selector": "#echo"}, ctx)
    assert r.value == MASK  # an extracted value that shows a secret is masked too
    errors: list[str] = []
    for bad in (
        {"type": "click", "selector": "#{{password}}", "timeoutMs": 200},
        {"type": "verify", "selector": "#email", "value": "{{password}}x", "timeoutMs": 200},
        {"type": "navigate", "url": "http://10.0.0.1/?token={{password}}"},
        {"type": "navigate", "url": "file:///{{password}}"},
    ):
        with pytest.raises(Exception) as info:
            await perform(page, bad, ctx)
        errors.append(str(info.value))
        assert info.value.__cause__ is None
    assert all(SECRET not in e for e in errors), errors
    assert any(MASK in e for e in errors)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("runner.test").addFilter(Redactor([SECRET]).logging_filter())
        logging.getLogger("runner.test").warning("typed %s", SECRET)
    assert SECRET not in caplog.text
    redactor = Redactor({"p": SECRET})
    assert redactor.redact(f"url?x={SECRET.replace('!', '%21')}") == f"url?x={MASK}"
    assert redactor.redact_value({"a": [SECRET]}) == {"a": [MASK]}


def _pixels_js() -> str:
    return """async ([b64, box]) => {
        const img = new Image();
        img.src = 'data:image/jpeg;base64,' + b64;
        await img.decode();
        const c = document.createElement('canvas');
        c.width = img.width; c.height = img.height;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        const d = g.getImageData(box.x + 4, box.y + 4, box.width - 8, box.height - 8).data;
        let r = 0, gr = 0, b = 0, n = 0;
        for (let i = 0; i < d.length; i += 4) { r += d[i]; gr += d[i + 1]; b += d[i + 2]; n++; }
        return [r / n, gr / n, b / n];
    }"""


async def test_screenshot_masks_passwords_and_secrets(
    session: BrowserSession, page_server: PageServer
) -> None:
    page = session.page
    await _open(page, page_server, "/actions/shot", """
      <style>input, p { font: 40px monospace; width: 600px; height: 70px; display: block;
        background: #fff; color: #000; border: 0; margin: 20px; }</style>
      <input id="pw" type="password"><input id="plain"><p id="shown"></p>""")
    await page.fill("#pw", SECRET)
    await page.fill("#plain", f"my {SECRET}")
    await page.evaluate("s => document.querySelector('#shown').textContent = s", SECRET)
    masked = await capture_jpeg(page, secrets=[SECRET])
    plain = await capture_jpeg(page, mask_passwords=False)
    assert masked is not None and plain is not None and masked[:2] == b"\xff\xd8"
    pixel = _pixels_js()
    for selector in ("#pw", "#plain", "#shown"):
        box = await page.locator(selector).bounding_box()
        assert box is not None
        r, g, b = await page.evaluate(pixel, [base64.b64encode(masked).decode(), box])
        assert r > 200 and g < 60 and b > 200, (selector, r, g, b)  # Playwright's magenta mask
    box = await page.locator("#pw").bounding_box()
    r, g, b = await page.evaluate(pixel, [base64.b64encode(plain).decode(), box])
    assert g > 150, "the unmasked screenshot should show the white field"
    closed = await session.context.new_page()
    await closed.close()
    assert await capture_jpeg(closed) is None


async def test_browser_is_closed_after_an_exception(tmp_path: Path) -> None:
    settings = loopback_settings(work_dir=str(tmp_path))
    pid = None
    with pytest.raises(RuntimeError, match="boom"):
        async with open_browser(settings, work_dir=tmp_path, resolver=local_resolve) as s:
            pid = s.pid
            assert pid is not None and process_alive(pid)
            assert (tmp_path / "downloads").is_dir()
            raise RuntimeError("boom")
    assert pid is not None and not process_alive(pid)


async def test_hung_browser_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser_module, "CLOSE_TIMEOUT_SECONDS", 1.0)
    settings = Settings(allow_loopback=True, work_dir=str(tmp_path))
    async with open_browser(settings, work_dir=tmp_path, resolver=local_resolve) as s:
        pid = s.pid
        assert pid is not None
        os.kill(pid, 19)  # SIGSTOP: close() can no longer get an answer
    assert not process_alive(pid)


async def test_cancellation_still_closes_the_browser(tmp_path: Path) -> None:
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def run() -> Any:
        settings = loopback_settings(work_dir=str(tmp_path))
        async with open_browser(settings, work_dir=tmp_path, resolver=local_resolve) as s:
            started.set_result(s.pid or 0)
            await asyncio.sleep(60)

    task = asyncio.create_task(run())
    pid = await asyncio.wait_for(started, 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pid and not process_alive(pid)
