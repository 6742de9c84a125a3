"""The local Realtime-protocol server: `/realtime/v1/websocket`, spoken like Supabase Realtime.

The official clients connect unchanged: supabase-js / realtime-js (vsn 2.0.0 by default) and
realtime-py via supabase-py (vsn 1.0.0). Query parameters: `apikey` (a project JWT: the anon or
service key, or a user's access token), `vsn` (1.0.0 or 2.0.0) and `log_level`. A missing or
invalid key, or an unknown vsn, is refused before the upgrade (HTTP 403), as Phoenix does.

Standalone: `create_app()` returns a Starlette app whose lifespan runs the hub. Inside another
app (the dev server): add `RealtimeServer.routes` to it and call `start()` / `stop()` from its
lifespan (a mounted sub-app's lifespan does not run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from aef.settings import Settings, get_settings
from local.realtime.hub import RealtimeHub
from local.realtime.serializers import ProtocolError, serializer_for
from local.realtime.session import CONFIRM_TOKEN_SECONDS, IDLE_TIMEOUT_SECONDS, Session
from local.realtime.tokens import TokenRejected, TokenVerifier

__all__ = ["WEBSOCKET_PATH", "RealtimeHub", "RealtimeServer", "create_app"]

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/realtime/v1/websocket"
_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
               "error": logging.ERROR}
# Phoenix closes with 1008 before accepting, which ASGI servers answer with HTTP 403.
_REFUSE = 1008
_GOING_AWAY = 1001


class RealtimeServer:
    """Routes plus lifecycle: the hub (polling + fan-out), a small pool for the RLS probes."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database_url: str | None = None,
        pool: AsyncConnectionPool | None = None,
        pool_max_size: int = 4,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        confirm_token_seconds: float = CONFIRM_TOKEN_SECONDS,
    ) -> None:
        self.settings = settings or get_settings()
        self.database_url = database_url or self.settings.database_url
        self._owns_pool = pool is None
        self.pool = pool or AsyncConnectionPool(
            self.database_url,
            min_size=1,
            max_size=pool_max_size,
            kwargs={"prepare_threshold": None, "autocommit": False},
            open=False,
            name="realtime",
            # a connection the database dropped (restart) is replaced, not handed to a join's
            # RLS probe; the pool serves joins and partition upkeep only, never the fan-out
            check=AsyncConnectionPool.check_connection,
        )
        self.hub = RealtimeHub(self.database_url, self.pool)
        self.verifier = TokenVerifier(self.settings)
        self.idle_timeout = idle_timeout
        self.confirm_token_seconds = confirm_token_seconds
        self.sessions: set[Session] = set()

    @property
    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute(WEBSOCKET_PATH, self.websocket_endpoint)]

    async def start(self) -> None:
        if self._owns_pool:
            await self.pool.open()
        await self.hub.start()

    async def stop(self) -> None:
        """Close every socket (1001 going away), stop polling, release the pool."""
        for session in list(self.sessions):
            await session.close(_GOING_AWAY)
        await self.hub.stop()
        if self._owns_pool:
            await self.pool.close()

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def app(self) -> Starlette:
        return Starlette(routes=self.routes, lifespan=self.lifespan)

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        params = websocket.query_params
        try:
            serializer = serializer_for(params.get("vsn"))
        except ProtocolError as exc:
            log.info("realtime connection refused", extra={"why": str(exc)})
            await websocket.close(_REFUSE)
            return
        token = (params.get("apikey") or websocket.headers.get("apikey")
                 or websocket.headers.get("x-api-key"))
        if not token:
            log.info("realtime connection refused", extra={"why": "no apikey"})
            await websocket.close(_REFUSE)
            return
        try:
            claims = await asyncio.to_thread(self.verifier.verify, token)
        except TokenRejected as exc:
            log.info("realtime connection refused", extra={"why": exc.reason})
            await websocket.close(_REFUSE)
            return
        await websocket.accept()
        session = Session(
            websocket,
            hub=self.hub,
            pool=self.pool,
            verifier=self.verifier,
            serializer=serializer,
            socket_claims=claims,
            headers={k: v for k, v in websocket.headers.items()
                     if k.startswith("x-") and k != "x-api-key"},
            idle_timeout=self.idle_timeout,
            confirm_token_seconds=self.confirm_token_seconds,
            log_level=_LOG_LEVELS.get((params.get("log_level") or "").lower()),
        )
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)


def create_app(settings: Settings | None = None, **options: Any) -> Starlette:
    """A standalone ASGI app serving only `/realtime/v1/websocket`."""
    return RealtimeServer(settings, **options).app()
