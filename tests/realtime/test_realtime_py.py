"""supabase-py (realtime-py, serializer 1.0.0) against the local server, unchanged."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from realtime import RealtimeChannelOptions, RealtimeSubscribeStates
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from tests.realtime.conftest import RunningServer, as_sent, make_token, seconds_to_expiry
from tests.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def private() -> RealtimeChannelOptions:
    """Channel options as an app passes them (a fresh dict: realtime-py writes into it)."""
    return {"config": {"broadcast": {"ack": False, "self": False},
                       "presence": {"key": "", "enabled": False}, "private": True}}


@pytest.fixture
async def client(realtime_server: RunningServer) -> AsyncIterator[AsyncClient]:
    supabase = await acreate_client(
        realtime_server.http_url,
        realtime_server.anon_key,
        AsyncClientOptions(realtime={"auto_reconnect": False}),
    )
    try:
        yield supabase
    finally:
        await supabase.remove_all_channels()


class Statuses:
    """Collects subscribe callbacks so a test can wait for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[RealtimeSubscribeStates, Exception | None]] = []
        self._changed = asyncio.Event()

    def __call__(self, status: RealtimeSubscribeStates, error: Exception | None) -> None:
        self.seen.append((status, error))
        self._changed.set()

    async def wait_for(self, status: RealtimeSubscribeStates,
                       within: float = 5) -> Exception | None:
        async with asyncio.timeout(within):
            while True:
                for seen, error in self.seen:
                    if seen == status:
                        return error
                self._changed.clear()
                await self._changed.wait()


async def test_receives_realtime_send_broadcasts_in_order(realtime_server: RunningServer,
                                                         client: AsyncClient) -> None:
    user = str(uuid.uuid4())
    await client.realtime.set_auth(make_token(user))
    received: list[dict[str, Any]] = []
    statuses = Statuses()
    channel = client.channel(f"room:{user}", private())
    channel.on_broadcast("step", lambda message: received.append(dict(message)))
    await channel.subscribe(statuses)
    assert statuses.seen[0] == (RealtimeSubscribeStates.SUBSCRIBED, None)

    await asyncio.to_thread(realtime_server.send, f"room:{user}", "step",
                            [{"n": n} for n in range(25)])
    await until(lambda: len(received) >= 25)
    assert [as_sent(m["payload"]) for m in received] == [{"n": n} for n in range(25)]
    assert all(m["event"] == "step" for m in received)
    assert all(uuid.UUID(m["meta"]["id"]) for m in received)


async def test_second_user_is_refused_with_supabases_error(realtime_server: RunningServer,
                                                          client: AsyncClient) -> None:
    owner = str(uuid.uuid4())
    await client.realtime.set_auth(make_token(str(uuid.uuid4())))
    statuses = Statuses()
    channel = client.channel(f"room:{owner}", private())
    await channel.subscribe(statuses)
    error = await statuses.wait_for(RealtimeSubscribeStates.CHANNEL_ERROR)
    assert error is not None
    assert json.loads(str(error)) == {
        "reason": "Unauthorized: You do not have permissions to read from this Channel topic: "
                  f"room:{owner}"}


async def test_set_auth_refreshes_the_token_of_a_joined_channel(
        realtime_server: RunningServer, client: AsyncClient) -> None:
    user = str(uuid.uuid4())
    first = make_token(user, ttl=2)
    await client.realtime.set_auth(first)
    received: list[dict[str, Any]] = []
    statuses = Statuses()
    channel = client.channel(f"room:{user}", private())
    channel.on_broadcast("*", lambda message: received.append(dict(message)))
    await channel.subscribe(statuses)
    await client.realtime.set_auth(make_token(user, ttl=600))  # pushes `access_token`
    await asyncio.sleep(seconds_to_expiry(first) + 0.5)  # the first token has expired
    assert [s for s, _ in statuses.seen] == [RealtimeSubscribeStates.SUBSCRIBED]
    await asyncio.to_thread(realtime_server.send, f"room:{user}", "late", [{"ok": True}])
    await until(lambda: bool(received))
    assert as_sent(received[0]["payload"]) == {"ok": True}


async def test_expiry_without_refresh_closes_the_channel(realtime_server: RunningServer,
                                                        client: AsyncClient) -> None:
    user = str(uuid.uuid4())
    # iat is floored to a second: a 1 s token could expire before the join
    await client.realtime.set_auth(make_token(user, ttl=2))
    statuses = Statuses()
    channel = client.channel(f"room:{user}", private())
    await channel.subscribe(statuses)
    error = await statuses.wait_for(RealtimeSubscribeStates.CHANNEL_ERROR, within=6)
    assert error is not None and "Token has expired" in str(error)
    await statuses.wait_for(RealtimeSubscribeStates.CLOSED)


async def test_unsubscribe_leaves_the_channel(realtime_server: RunningServer,
                                             client: AsyncClient) -> None:
    user = str(uuid.uuid4())
    await client.realtime.set_auth(make_token(user))
    received: list[dict[str, Any]] = []
    statuses = Statuses()
    channel = client.channel(f"room:{user}", private())
    channel.on_broadcast("*", lambda message: received.append(dict(message)))
    await channel.subscribe(statuses)
    await channel.unsubscribe()
    await statuses.wait_for(RealtimeSubscribeStates.CLOSED)
    assert realtime_server.server.hub.subscriber_count(f"room:{user}", True) == 0
    await asyncio.to_thread(realtime_server.send, f"room:{user}", "after", [{"n": 1}])
    await asyncio.sleep(0.3)
    assert received == []
