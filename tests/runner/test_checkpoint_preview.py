"""The checkpoint preview on the demo site (issue 15): the demo workflow as transformed, run by
the engine with real Chromium against the local webmail + CRM.

The password step (given a checkpoint here) previews its grounded Password field with the
value masked; the CRM write previews the real values of that iteration; the preview
screenshot shows the outlined targets (pixels read back in Chromium); the secret's value is
nowhere in the checkpoint rows, events or logs.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright

from aef.db import Database
from aef.settings import Settings
from aef.transform import transform
from local.demo import DEMO_EMAIL, DEMO_PASSWORD, WORKFLOW_PATH, DemoServer, serve_demo
from local.demo.seed import seed_emails
from runner.preview import OUTLINE_WIDTH, PREVIEW_MASK
from tests.runner.helpers import (
    answer_checkpoint,
    before_step,
    dump,
    events,
    execution_row,
    logs,
    pending_checkpoint,
    request_stop,
    run_engine,
)

pytestmark = pytest.mark.browser

SAMPLE_JS = """
async ([src, points]) => {
  const img = new Image();
  img.src = src;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
}
"""


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with serve_demo() as server:
        yield server


def demo_plan() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The demo workflow's plan, with a checkpoint on the password step too."""
    document = transform(json.loads(WORKFLOW_PATH.read_text())).document
    plan, config = document["aef"]["plan"], document["aef"]["config"]
    login = next(s for s in plan if s["id"] == "demo_login_flow")
    password = next(s for s in login["children"] if s["id"] == "enter_password")
    password["checkpoint"] = before_step("Type the password?")
    return plan, {**config, "stepTimeout": 10}


async def sample(jpeg: bytes, points: list[tuple[float, float]]) -> list[list[int]]:
    """The colours of the screenshot at `points`, decoded by Chromium itself."""
    src = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            colours: list[list[int]] = await page.evaluate(
                SAMPLE_JS, [src, [[round(x), round(y)] for x, y in points]])
            return colours
        finally:
            await browser.close()


def orange(rgb: list[int]) -> bool:
    r, g, b = rgb
    return r > 200 and 60 < g < 190 and b < 100


async def test_preview_shows_real_values_masks_the_password_and_outlines_targets(
        db: Database, settings: Settings, demo: DemoServer, new_execution: Any) -> None:
    plan, config = demo_plan()
    execution = new_execution(plan, config=config, variables={"base_url": demo.base_url},
                              secret_values={"demo_email": DEMO_EMAIL,
                                             "demo_password": DEMO_PASSWORD})
    runner = asyncio.create_task(run_engine(settings, db, execution))
    try:
        # 1. the password: grounded on the live page, its value never shown
        checkpoint = await pending_checkpoint(db, execution, within=60)
        assert checkpoint["step_id"] == "enter_password"
        [typed] = checkpoint["preview"]["actions"]
        assert typed["kind"] == "act" and typed["value"] == PREVIEW_MASK
        assert typed["target"]["resolved"] is True
        assert typed["target"]["role"] == "textbox" and "Password" in typed["target"]["name"]
        assert typed["description"] == "Type \u2022\u2022\u2022\u2022 into the Password field"
        assert "/mail/login/password" in checkpoint["preview"]["url"]
        answer_checkpoint(db, execution, "approved")

        # 2. the CRM write that adds Marcus Adeyemi: every value of this iteration, each
        #    from his email (the update of the known investor before it is approved)
        while True:
            checkpoint = await pending_checkpoint(db, execution, within=90)
            if checkpoint["step_id"] == "add_investor_record":
                break
            answer_checkpoint(db, execution, "approved")
        marcus = next(e for e in seed_emails() if e.sender == "Marcus Adeyemi")
        preview = checkpoint["preview"]
        values = {a["description"]: a["value"] for a in preview["actions"]}
        assert values["Fill the Name field"] == "Marcus Adeyemi"
        assert values["Fill the Company field"] == "Northwind Capital"
        assert values["Fill the Email field"] == marcus.sender_email
        assert values["Fill the Phone field"] == marcus.phone
        assert values[f"Type {marcus.investment_focus} into the Investment focus field"] \
            == marcus.investment_focus
        assert values["Fill the Notes field"] == marcus.summary
        assert execution_row(db, execution)["variables"]["investor_name"] == "Marcus Adeyemi"
        assert {a["stepId"] for a in preview["actions"]} == {"add_investor_record"}
        # the button is on the page now; the form fields appear only after its click
        button, *_ = [a for a in preview["actions"] if a["kind"] == "click"]
        assert button["target"]["resolved"] is True
        assert button["target"]["role"] in ("link", "button")
        assert "Add" in button["target"]["name"]
        name_field = next(a for a in preview["actions"]
                          if a["description"] == "Fill the Name field")
        assert name_field["target"] == {"role": None, "name": None, "selector": "#name",
                                        "resolved": False, "box": None}
        # the choices say what each answer does in this loop
        assert {c["response"] for c in checkpoint["choices"]} == {"approve", "skip", "reject"}
        # the live message carries the same preview, without the storage key
        message = [e for e in events(db, execution)
                   if e["type"] == "checkpoint_required"][-1]["message"]
        [live] = message["checkpoints"]
        assert live["preview"]["actions"] == preview["actions"]
        assert "screenshotKey" not in live["preview"] and live["choices"]

        # 3. the screenshot outlines the targets found on the page now
        outlined = [a["target"]["box"] for a in preview["actions"]
                    if a["target"] and a["target"]["resolved"] and a["target"].get("box")]
        assert outlined, preview["actions"]
        async with httpx.AsyncClient() as http:
            shot = await http.get(preview["screenshot"])
        assert shot.status_code == 200 and shot.content[:3] == b"\xff\xd8\xff"
        box = outlined[0]
        edge = OUTLINE_WIDTH / 2
        border = [(box["x"] - edge, box["y"] + box["height"] / 2),
                  (box["x"] + box["width"] + edge, box["y"] + box["height"] / 2),
                  (box["x"] + box["width"] / 2, box["y"] + box["height"] + edge)]
        colours = await sample(shot.content, border)
        assert all(orange(c) for c in colours), colours
        # the orange is the overlay's: the same page in the previous step's screenshot
        plain_url = execution_row(db, execution)["browser"]["screenshot"]
        async with httpx.AsyncClient() as http:
            plain = await http.get(plain_url)
        assert not any(orange(c) for c in await sample(plain.content, border[:1]))
    finally:
        request_stop(db, execution)
        await asyncio.wait_for(runner, 60)

    # 4. the secret's value is nowhere
    with db.as_service() as conn:
        rows = conn.execute("select * from aef_checkpoints where execution_id = %s",
                            (execution.id,)).fetchall()
    written = dump([rows, events(db, execution), logs(db, execution)])
    assert DEMO_PASSWORD not in written and DEMO_EMAIL not in written
    assert PREVIEW_MASK in written


async def test_the_overlay_outlines_only_for_the_shot_and_never_shows_a_secret() -> None:
    """The outline is drawn in the page for the screenshot and removed right after; a
    password field's value is masked in the shot and absent from the preview."""
    from aef.models import PlanStep
    from runner.grounding import GroundingResolver
    from runner.preview import OVERLAY_ID, build_preview, outlined_screenshot

    step = PlanStep.model_validate({
        "id": "login", "label": "Log in", "kind": "task", "method": "automated", "actions": [
            {"type": "fill", "selector": "#user", "value": "{{user}}"},
            {"type": "act", "instruction": "Type {{pw}} into the Password field",
             "credentialField": "pw"},
            {"type": "click", "selector": "#missing"}]})
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.set_content(
                "<label>User <input id='user'></label>"
                "<label>Password <input id='pw' type='password' value='hunter2-secret'></label>")
            seen: list[int] = []
            preview = await build_preview(page, [step], variables={"user": "ada"},
                                          secrets={"pw": "hunter2-secret"},
                                          resolver=GroundingResolver())
            await page.expose_function("aefSeen", lambda n: seen.append(n))
            await page.evaluate(
                """() => new MutationObserver(() => window.aefSeen(
                     document.querySelectorAll('[data-aef-preview-outline]').length))
                   .observe(document.documentElement, {childList: true, subtree: true})""")
            shot = await outlined_screenshot(page, preview, secrets=["hunter2-secret"])
            await page.wait_for_timeout(50)  # let the observer's calls arrive
            remaining = await page.evaluate(f"document.getElementById('{OVERLAY_ID}')")
        finally:
            await browser.close()
    assert shot is not None and remaining is None
    assert 2 in seen and seen[-1] == 0  # two outlines were in the page, then none
    user, password, missing = preview.actions
    assert user["value"] == "ada" and user["target"]["resolved"] is True
    assert password["value"] == PREVIEW_MASK and password["target"]["name"] == "Password"
    assert missing["target"]["resolved"] is False
    assert "hunter2" not in json.dumps(preview.as_json())
    box = user["target"]["box"]
    assert orange((await sample(shot, [(box["x"] - OUTLINE_WIDTH / 2, box["y"] + 5)]))[0])
