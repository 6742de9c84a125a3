"""Fixtures for the demo site: a fresh site per test on a free port, one Chromium per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from aef.settings import get_settings
from local.demo import DemoServer, serve_demo
from tests.demo.helpers import CHROMIUM_ARGS


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with serve_demo() as server:
        yield server


@pytest_asyncio.fixture
async def client(demo: DemoServer) -> AsyncIterator[httpx.AsyncClient]:
    """Real HTTP to the served site (no redirects followed, so tests see them)."""
    async with httpx.AsyncClient(base_url=demo.base_url, timeout=10) as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=get_settings().chromium_path or "/usr/bin/chromium",
            args=CHROMIUM_ARGS,
            headless=True,
        )
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page
    await context.close()
