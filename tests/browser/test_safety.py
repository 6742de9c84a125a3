"""Network guard against real Chromium. No test sends a packet beyond loopback: every
forbidden target is refused by the URL check, the route layer or the egress proxy before a
connection is made, and each refusal is asserted through ``on_block``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Error as PlaywrightError

from aef.settings import Settings
from aef.url_policy import Verdict, check_url, parse_ipv4
from runner.actions import ActionContext, Blocked, perform
from runner.browser import BrowserSession, GuardedContext
from runner.safety import NetworkGuard
from tests.browser.conftest import PageServer, local_resolve, loopback_settings

pytestmark = pytest.mark.browser

STRICT = Settings(allow_loopback=False, allow_private_networks=False)


@pytest.mark.parametrize(
    ("url", "category"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://2852039166/", "metadata"),
        ("http://0xA9FEA9FE/", "metadata"),
        ("http://0251.0376.0251.0376/", "metadata"),
        ("http://0xa9.254.43518/", "metadata"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://[::ffff:a9fe:a9fe]/", "metadata"),
        ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://169.254.1.1/", "link_local"),
        ("http://[fe80::1%25eth0]/", "link_local"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://127.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://0.0.0.0/", "loopback"),
        ("http://0/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://localhost./", "loopback"),
        ("http://app.localhost/", "loopback"),
        ("http://%31%32%37.0.0.1/", "loopback"),
        ("http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", "loopback"),
        ("http://127.0.0.1\\@example.com/", "loopback"),
        ("http://224.0.0.1/", "reserved"),
        ("http://256.1.1.1/", "invalid"),
        ("file:///etc/passwd", "scheme"),
        ("data:text/html,<h1>hi</h1>", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("ws://10.0.0.1/", "scheme"),
        ("ftp://example.com/", "scheme"),
        ("chrome://settings", "scheme"),
    ],
)
def test_check_url_blocks(url: str, category: str) -> None:
    verdict = check_url(url, STRICT)
    assert not verdict.allowed, verdict
    assert verdict.category == category, verdict


def test_check_url_allows_public_and_what_settings_allow() -> None:
    public = check_url("https://example.com/path?q=1", STRICT)
    assert public.allowed and public.needs_dns
    assert check_url("http://8.8.8.8/", STRICT).allowed
    assert check_url("about:blank", STRICT).allowed
    assert check_url("http://127.0.0.1:8080/", Settings(allow_loopback=True)).allowed
    assert check_url("http://10.1.2.3/", Settings(allow_private_networks=True)).allowed
    # Metadata and link-local stay blocked whatever the settings say.
    both = Settings(allow_loopback=True, allow_private_networks=True)
    assert not check_url("http://169.254.169.254/", both).allowed
    assert not check_url("http://[fd00:ec2::254]/", both).allowed
    assert not check_url("http://169.254.170.2/v2/credentials", both).allowed
    assert check_url("wss://example.com/socket", STRICT, kind="websocket").allowed


def test_parse_ipv4_like_browsers() -> None:
    assert str(parse_ipv4("2852039166")) == "169.254.169.254"
    assert str(parse_ipv4("0xA9FEA9FE")) == "169.254.169.254"
    assert str(parse_ipv4("127.1")) == "127.0.0.1"
    assert str(parse_ipv4("10.1")) == "10.0.0.1"
    assert parse_ipv4("example.com") is None
    assert parse_ipv4("1.2.3.example") is None
    with pytest.raises(ValueError):
        parse_ipv4("1.2.3.4.5")


async def test_dns_names_are_resolved_and_every_address_checked() -> None:
    guard = NetworkGuard(STRICT)  # real getaddrinfo: 'localhost' comes from /etc/hosts
    pending = Verdict(True, "http://localhost/", "public", "", "localhost", needs_dns=True)
    done = await guard.complete(pending)
    assert not done.allowed and done.category == "loopback"
    assert "127.0.0.1" in done.addresses or "::1" in done.addresses

    async def rebinding(host: str) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]  # one public, one private: blocked

    mixed = NetworkGuard(STRICT, resolver=rebinding)
    verdict = await mixed.check("http://mixed.example/")
    assert not verdict.allowed and verdict.category == "private"


# --------------------------------------------------------------------------- in the browser


class Blocks(list[tuple[str, str]]):
    def __call__(self, url: str, reason: str) -> None:
        self.append((url, reason))

    def urls(self) -> list[str]:
        return [u for u, _ in self]


@pytest_asyncio.fixture(loop_scope="session")
async def strict(session: BrowserSession) -> AsyncIterator[tuple[GuardedContext, Blocks]]:
    """A context where loopback is NOT allowed."""
    blocks = Blocks()
    guarded = await session.new_context(settings=STRICT, on_block=blocks)
    yield guarded, blocks
    await guarded.close()
    session.contexts.remove(guarded)


@pytest_asyncio.fixture(loop_scope="session")
async def loose(session: BrowserSession) -> AsyncIterator[tuple[GuardedContext, Blocks]]:
    """A context where loopback is allowed (to reach the page server)."""
    blocks = Blocks()
    guarded = await session.new_context(settings=loopback_settings(), on_block=blocks)
    yield guarded, blocks
    await guarded.close()
    session.contexts.remove(guarded)


def _ctx(guarded: GuardedContext, work_dir: Path) -> ActionContext:
    return ActionContext(work_dir=work_dir, guard=guarded.guard, default_timeout_ms=5000)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/",
        "http://0xA9FEA9FE/",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.1/",
        "file:///etc/passwd",
        "data:text/html,<h1>phish</h1>",
        "javascript:alert(1)",
    ],
)
async def test_navigate_action_refuses_before_any_request(
    strict: tuple[GuardedContext, Blocks], work_dir: Path, url: str
) -> None:
    guarded, blocks = strict
    with pytest.raises(Blocked) as info:
        await perform(guarded.page, {"type": "navigate", "url": url}, _ctx(guarded, work_dir))
    assert info.value.code == "blocked"
    assert blocks.urls() == [url]
    assert guarded.page.url == "about:blank"


async def test_localhost_blocked_when_loopback_not_allowed(
    strict: tuple[GuardedContext, Blocks], page_server: PageServer, work_dir: Path
) -> None:
    guarded, blocks = strict
    url = page_server.page("/safety/local", "<p>secret intranet</p>").replace(
        "127.0.0.1", "localhost")
    with pytest.raises(Blocked):
        await perform(guarded.page, {"type": "navigate", "url": url}, _ctx(guarded, work_dir))
    # Straight page.goto (as a page script or a takeover could) is stopped by the route layer.
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        await guarded.page.goto(url)
    assert [u for u in blocks.urls() if u.startswith("http://localhost")] == [url, url]
    assert "/safety/local" not in page_server.hits


async def test_name_resolving_to_loopback_is_blocked_and_pinned_when_allowed(
    session: BrowserSession, page_server: PageServer
) -> None:
    async def intranet(host: str) -> list[str]:
        if host == "intranet.test":
            return ["127.0.0.1"]
        return await local_resolve(host)

    url = page_server.page("/safety/intranet", "<p>intranet page</p>").replace(
        "127.0.0.1", "intranet.test")
    blocks = Blocks()
    denied = await session.new_context(settings=STRICT, on_block=blocks, resolver=intranet)
    allowed = await session.new_context(settings=loopback_settings(), resolver=intranet)
    try:
        with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
            await denied.page.goto(url)
        assert blocks and "resolves to 127.0.0.1" in blocks[0][1]
        # Chromium cannot resolve intranet.test itself: the page loads only because the
        # egress proxy connects to the address the guard checked.
        await allowed.page.goto(url)
        assert await allowed.page.inner_text("body") == "intranet page"
    finally:
        for guarded in (denied, allowed):
            await guarded.close()
            session.contexts.remove(guarded)


@pytest.mark.parametrize("target", ["http://10.0.0.1/", "http://2852039166/latest/"])
async def test_redirect_into_private_range_is_blocked_before_it_leaves(
    loose: tuple[GuardedContext, Blocks], page_server: PageServer, work_dir: Path, target: str
) -> None:
    guarded, blocks = loose
    path = f"/safety/redirect-{abs(hash(target))}"
    start = page_server.redirect(path, target)
    with pytest.raises(Blocked):
        await perform(guarded.page, {"type": "navigate", "url": start},
                      _ctx(guarded, work_dir))
    # Playwright does not route redirect hops; the egress proxy saw the hop and refused it
    # before opening any connection.
    assert blocks, "the redirect hop was not reported"
    hop_url, reason = blocks[-1]
    assert hop_url.startswith(target.rstrip("/").replace("2852039166", "169.254.169.254"))
    assert ("private" in reason) or ("metadata" in reason)
    assert guarded.guard.blocks[-1].layer == "proxy"


async def test_file_navigation_by_page_goto_is_blocked(
    loose: tuple[GuardedContext, Blocks]
) -> None:
    guarded, blocks = loose
    with pytest.raises(PlaywrightError):
        await guarded.page.goto("file:///etc/passwd")
    assert "file:///etc/passwd" in blocks.urls()
    # Chromium's error page commits after the abort is reported.
    await guarded.page.wait_for_url(lambda url: url.startswith("chrome-error://"))
    assert "root:" not in await guarded.page.inner_text("body")


async def test_subresources_and_websockets_to_forbidden_targets_are_blocked(
    loose: tuple[GuardedContext, Blocks], page_server: PageServer
) -> None:
    guarded, blocks = loose
    url = page_server.page("/safety/subresources", """
      <img id="meta" src="http://169.254.169.254/latest/meta-data/iam.png">
      <script>
        window.wsResult = new Promise((resolve) => {
          const ws = new WebSocket('ws://10.0.0.1/socket');
          ws.onopen = () => resolve('open');
          ws.onclose = (e) => resolve('closed ' + e.code);
        });
      </script>""")
    await guarded.page.goto(url)
    ws_result = await guarded.page.evaluate("window.wsResult")
    assert ws_result.startswith("closed")
    assert "ws://10.0.0.1/socket" in blocks.urls()
    assert "http://169.254.169.254/latest/meta-data/iam.png" in blocks.urls()
    layers = {e.url: e.layer for e in guarded.guard.blocks}
    assert layers["ws://10.0.0.1/socket"] == "websocket"


async def test_page_script_cannot_navigate_to_data_or_file(
    loose: tuple[GuardedContext, Blocks], page_server: PageServer
) -> None:
    guarded, _ = loose
    url = page_server.page("/safety/script-nav", "<p>start</p>")
    await guarded.page.goto(url)
    navigate: Callable[[str], str] = lambda target: f"location.href = {target!r}"  # noqa: E731
    for target in ("data:text/html,<h1>phish</h1>", "file:///etc/passwd"):
        await guarded.page.evaluate(navigate(target))
        await guarded.page.wait_for_timeout(300)
        assert guarded.page.url == url
