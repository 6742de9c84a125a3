"""The one ASGI app `aef dev` serves: the functions, auth, Realtime, the console and the
demo site behind one port, and the sweeper on its schedule."""


from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn

from local.keys import JWKS_PATH, SigningKey, jwks_route

log = logging.getLogger("aef.dev")

SWEEP_EVERY_SECONDS = 15.0



class StackApp:
    """One ASGI app: functions (through the gateway), JWKS, Realtime, health, demo site."""

    def __init__(self, *, gateway: Any, realtime: Any, demo: Any, key: SigningKey,
                 auth: Any = None, console: Any = None, jwks_url: str, jwks_ttl: float,
                 sweeper: Callable[[], Any] | None,
                 on_ready: Callable[[], None]) -> None:
        from starlette.routing import Route, Router

        self.gateway = gateway
        self.realtime = realtime
        self.demo = demo
        self.console = console
        self.key = key
        self.jwks_url = jwks_url
        self.jwks_ttl = jwks_ttl
        self.sweeper = sweeper
        self.on_ready = on_ready
        self.ready = False
        self.serving = asyncio.Event()  # set by the server once its socket accepts
        self._tasks: list[asyncio.Task[None]] = []
        self.router = Router(routes=[jwks_route(key),
                                     Route("/health", self._health, methods=["GET"]),
                                     *(auth.routes() if auth is not None else []),
                                     *realtime.routes])

    async def _health(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok" if self.ready else "starting"},
                            status_code=200 if self.ready else 503)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith("/api/"):
            await self.gateway(scope, receive, send)
        elif (path in (JWKS_PATH, "/health") or path.startswith("/realtime/")
              or path.startswith("/auth/v1/")):
            await self.router(scope, receive, send)
        elif self.console is not None and (path == "/console" or path.startswith("/console/")):
            await self.console(scope, receive, send)
        else:
            await self.demo(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        try:
            await self.realtime.start()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        self._tasks.append(asyncio.create_task(self._keys_then_ready()))
        if self.sweeper is not None:
            self._tasks.append(asyncio.create_task(self._sweep_forever()))
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.realtime.stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def _keys_then_ready(self) -> None:
        """Warm the process's JWKS cache over HTTP, from a worker thread, and keep it warm.

        The Realtime server checks tokens on the event loop; if its cache were cold it would
        fetch the JWKS from this very server while blocking the loop that must answer. So the
        cache is filled (and refreshed before it goes stale) from a thread, through the same
        URL and code the functions use in the cloud; the stack reports ready only after that.
        """
        from aef.auth import default_jwks

        await self.serving.wait()
        while True:
            try:
                found = await asyncio.to_thread(default_jwks.get, self.jwks_url, self.key.kid,
                                                self.jwks_ttl)
            except Exception as exc:
                log.error("could not read the local JWKS", extra={"error": str(exc)})
                await asyncio.sleep(default_jwks.min_refetch_seconds)
                continue
            if found is None:
                log.error("the local JWKS does not contain the signing key")
            elif not self.ready:
                self.ready = True
                self.on_ready()
            await asyncio.sleep(self.jwks_ttl)

    async def _sweep_forever(self) -> None:
        assert self.sweeper is not None
        while True:
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
            try:
                await asyncio.to_thread(self.sweeper)
            except Exception:
                log.exception("sweeper run failed")


def scheduled_event(rule: str) -> dict[str, Any]:
    """The EventBridge event a Schedule rule delivers to its function."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "local",
        "resources": [f"arn:aws:events:local:000000000000:rule/{rule}"],
        "detail": {},
    }


class StopServing(Exception):
    """Raised by the signal handler that uvicorn hands a captured SIGINT/SIGTERM back to."""


def stop_serving(signum: int, frame: Any) -> None:
    raise StopServing(signum)


class StackServer(uvicorn.Server):
    """uvicorn, telling the app when its socket is accepting connections."""

    def __init__(self, config: uvicorn.Config, app: StackApp) -> None:
        super().__init__(config)
        self.stack_app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.stack_app.serving.set()

