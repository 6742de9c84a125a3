"""supabase-js on Node 20 (with `ws` as transport) against the local server, unchanged.

`js/subscribe.mjs` prints what the official client observes as JSON lines. Its dependencies
are installed with `npm ci` into tests/realtime/js/node_modules (git-ignored) when missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.realtime.conftest import RunningServer, as_sent, make_token, seconds_to_expiry
from tests.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="session")

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "subscribe.mjs"


@pytest.fixture(scope="session")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js 20+ and npm are needed for the supabase-js tests"
    if not (JS_DIR / "node_modules" / "@supabase" / "supabase-js").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR,
                       check=True, timeout=600)
    return node


class NodeClient:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, within: float = 10) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not raw:
            assert self.process.stderr is not None
            err = await self.process.stderr.read()
            raise AssertionError(f"supabase-js client exited: {err.decode()[-2000:]}")
        return dict(json.loads(raw))

    async def until(self, key: str, within: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                line = await self.line(within)
                if key in line:
                    return line


@asynccontextmanager
async def supabase_js(node: str, server: RunningServer, **env: str) -> AsyncIterator[NodeClient]:
    process = await asyncio.create_subprocess_exec(
        node, str(SCRIPT),
        cwd=JS_DIR,
        env={**os.environ, "SUPABASE_URL": server.http_url, "ANON_KEY": server.anon_key, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeClient(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
async def test_receives_broadcasts_in_order(node: str, realtime_server: RunningServer,
                                           vsn: str) -> None:
    user = str(uuid.uuid4())
    async with supabase_js(node, realtime_server, ACCESS_TOKEN=make_token(user),
                           TOPIC=f"room:{user}", VSN=vsn, EXPECT="15") as client:
        assert await client.until("status") == {"status": "SUBSCRIBED", "error": None}
        await asyncio.to_thread(realtime_server.send, f"room:{user}", "step",
                                [{"n": n} for n in range(15)])
        messages = [(await client.until("broadcast"))["broadcast"] for _ in range(15)]
        assert await client.until("left") == {"left": "ok", "connected": True}
        # The phx_leave, not a disconnect, ends the subscription.
        await until(
            lambda: not realtime_server.server.hub.subscriber_count(f"room:{user}", True))
        assert client.process.returncode is None
    assert [as_sent(m["payload"]) for m in messages] == [{"n": n} for n in range(15)]
    for message in messages:
        assert message["type"] == "broadcast" and message["event"] == "step"
        assert uuid.UUID(message["meta"]["id"])


async def test_another_users_token_is_refused(node: str, realtime_server: RunningServer) -> None:
    owner = str(uuid.uuid4())
    async with supabase_js(node, realtime_server, ACCESS_TOKEN=make_token(str(uuid.uuid4())),
                           TOPIC=f"room:{owner}") as client:
        assert await client.until("status") == {
            "status": "CHANNEL_ERROR",
            "error": "Unauthorized: You do not have permissions to read from this Channel "
                     f"topic: room:{owner}",
        }


async def test_heartbeats_are_answered(node: str, realtime_server: RunningServer) -> None:
    user = str(uuid.uuid4())
    async with supabase_js(node, realtime_server, ACCESS_TOKEN=make_token(user),
                           TOPIC=f"room:{user}", HEARTBEAT_MS="400") as client:
        beats = [(await client.until("heartbeat"))["heartbeat"] for _ in range(4)]
    assert beats == ["sent", "ok", "sent", "ok"]


async def test_set_auth_refresh_outlives_the_first_token(node: str,
                                                        realtime_server: RunningServer) -> None:
    user = str(uuid.uuid4())
    first = make_token(user, ttl=4)  # Node takes a moment to start: leave it time to join
    async with supabase_js(node, realtime_server, ACCESS_TOKEN=first,
                           REFRESH_TOKEN=make_token(user, ttl=600), TOPIC=f"room:{user}",
                           EXPECT="1") as client:
        assert (await client.until("status"))["status"] == "SUBSCRIBED"
        await client.until("refreshed")
        await asyncio.sleep(seconds_to_expiry(first) + 0.5)
        await asyncio.to_thread(realtime_server.send, f"room:{user}", "late", [{"ok": 1}])
        line = await client.line()
        assert "broadcast" in line, line  # no CLOSED / CHANNEL_ERROR came first
        assert as_sent(line["broadcast"]["payload"]) == {"ok": 1}
