"""Serve the demo site with uvicorn on a background thread (tests, `aef dev`, `aef demo`).

The socket is bound before the thread starts, so the port is known (and free) the moment
``serve_demo`` returns, and several servers can run side by side on port 0.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from local.demo.site import DemoState, create_demo_app

__all__ = ["DemoServer", "serve_demo"]


@dataclass(frozen=True)
class DemoServer:
    base_url: str  # e.g. http://127.0.0.1:43817 (no trailing slash), the workflow's base_url
    app: Starlette

    @property
    def state(self) -> DemoState:
        state: DemoState = self.app.state.demo
        return state


@contextmanager
def serve_demo(
    app: Starlette | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
) -> Iterator[DemoServer]:
    """Run ``app`` (default: a fresh demo site) until the block exits."""
    app = app or create_demo_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="aef-demo-site", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the demo site did not start")
        time.sleep(0.01)
    try:
        yield DemoServer(base_url=f"http://{host}:{bound_port}", app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
