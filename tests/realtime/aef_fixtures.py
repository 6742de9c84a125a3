"""Fixtures for the Realtime proofs against real AEF executions (issue 6).

The local Realtime server runs against the `database_url` database (shim + the real migrations),
so the only policy deciding who may join `execution:<id>` is `aef_execution_topic_read`. The
API runs through its Mangum handlers (tests/api/conftest.py) in the same process; one secret
signs every token: the server verifies with `get_settings().jwt_secret`, which the API uses
too and which tests/api/conftest.py sets (`AEF_JWT_SECRET`) at import — so a user's access
token works for both, as a Supabase access token does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from aef.settings import get_settings
from local.realtime.server import RealtimeServer

# Importing tests.api.conftest sets AEF_JWT_SECRET (and the ECS launcher) before any Settings
# are read; its fixtures are re-exported for the test module.
from tests.api.conftest import Api, ApiUser, api, moto_ecs, new_user
from tests.realtime.conftest import RunningServer, make_token
from tests.waiting import wait_until

__all__ = ["AefRealtime", "Api", "ApiUser", "aef_realtime", "api", "event_rows", "moto_ecs",
           "new_user", "realtime_messages", "realtime_py"]


@dataclass(frozen=True)
class AefRealtime:
    """The running server plus what a test needs to cut a client off from the server side."""

    running: RunningServer
    loop: asyncio.AbstractEventLoop
    uvicorn_server: uvicorn.Server

    @property
    def server(self) -> RealtimeServer:
        return self.running.server

    def subscribers(self, topic: str) -> int:
        return self.server.hub.subscriber_count(topic, True)

    async def caught_up(self) -> None:
        """Every message committed so far has been fanned out (see RealtimeHub.caught_up)."""
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            self.server.hub.caught_up(), self.loop))

    async def drop_subscribers(self, topic: str) -> int:
        """Abort (TCP reset, no close frame) every socket joined to private `topic`.

        Runs in the server's loop: it is what a dropped network or a killed Realtime node looks
        like to both sides. Returns how many sockets were cut.
        """
        async def abort() -> int:
            wanted = f"realtime:{topic}"
            clients = {tuple(s.ws.client) for s in self.server.sessions
                       if wanted in s.channels and s.ws.client is not None}
            transports = {id(p.transport): p.transport
                          for p in list(self.uvicorn_server.server_state.connections)
                          if getattr(p, "client", None) in clients
                          and getattr(p, "transport", None) is not None}
            for transport in transports.values():
                transport.abort()
            return len(transports)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(abort(), self.loop))


@pytest.fixture(scope="session")
def aef_realtime(database_url: str, api: Api) -> Iterator[AefRealtime]:
    """A RealtimeServer under uvicorn (thread, own loop) on the migrated test database."""
    # `api` (moto_ecs) cleared the settings cache after the environment was set; the copy
    # keeps the API's secret, audience and issuer and only points at the test database.
    settings = get_settings().model_copy(update={"database_url": database_url})
    assert settings.jwt_secret is not None
    secret = settings.jwt_secret.get_secret_value()
    assert secret == os.environ["AEF_JWT_SECRET"], "API and Realtime must share one JWT secret"
    server = RealtimeServer(settings, idle_timeout=30)
    loops: list[asyncio.AbstractEventLoop] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loops.append(asyncio.get_running_loop())
        async with server.lifespan(app):
            yield

    config = uvicorn.Config(Starlette(routes=server.routes, lifespan=lifespan), host="127.0.0.1",
                            port=0, log_level="warning", lifespan="on", ws="websockets-sansio",
                            ws_per_message_deflate=False)
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, name="aef-realtime-uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: runner.started or not thread.is_alive(), within=15, interval=0.02,
               what="the realtime server to start")
    if not runner.started:
        raise RuntimeError("the realtime server did not start")
    port = int(runner.servers[0].sockets[0].getsockname()[1])
    anon_key = make_token(None, role="anon", ttl=10 * 365 * 86400, iss="supabase", secret=secret)
    running = RunningServer(f"http://127.0.0.1:{port}",
                            f"ws://127.0.0.1:{port}/realtime/v1/websocket",
                            database_url, anon_key, server)
    try:
        yield AefRealtime(running, loops[0], runner)
    finally:
        runner.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the realtime server did not stop"


@pytest.fixture
async def realtime_py(aef_realtime: AefRealtime
                      ) -> AsyncIterator[Callable[[str], Awaitable[AsyncClient]]]:
    """Makes supabase-py clients (realtime-py inside) signed in with a user's access token."""
    made: list[AsyncClient] = []

    async def make(access_token: str) -> AsyncClient:
        client = await acreate_client(aef_realtime.running.http_url,
                                      aef_realtime.running.anon_key,
                                      AsyncClientOptions(realtime={"auto_reconnect": False}))
        await client.realtime.set_auth(access_token)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.remove_all_channels(), 5)


def event_rows(db: Any, execution_id: str) -> list[dict[str, Any]]:
    """The execution's outbox, in seq order (seq, type, message)."""
    from tests.integration.factories import admin_connection

    with admin_connection(db) as conn:
        return conn.execute("select seq, type, message from aef_events where execution_id = %s"
                            " order by seq", (execution_id,)).fetchall()


def realtime_messages(db: Any, execution_id: str) -> list[dict[str, Any]]:
    """What `realtime.send` stored for the execution's topic (what Realtime delivers)."""
    from tests.integration.factories import broadcast_rows

    return broadcast_rows(db, execution_id)
