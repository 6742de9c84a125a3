"""Helpers shared by the demo-site tests."""

from __future__ import annotations

from playwright.async_api import Page

from local.demo import DEMO_EMAIL, DEMO_PASSWORD

CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run"]


async def sign_in(page: Page, base_url: str) -> None:
    """The two-step login a person would do, by labels and button names."""
    await page.goto(f"{base_url}/mail/login")
    await page.get_by_label("Email address").fill(DEMO_EMAIL)
    await page.get_by_role("button", name="Next").click()
    await page.wait_for_url("**/mail/login/password")
    await page.get_by_label("Password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/mail/inbox")
