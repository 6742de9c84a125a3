"""Browser test fixtures: a local page server on 127.0.0.1 and a module-scoped Chromium.

Every page a browser test loads is served here, on loopback; tests that need the network guard
to allow it use settings with ``allow_loopback=True``. Nothing here ever talks to another host.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import pytest_asyncio

from aef.settings import Settings
from runner.browser import BrowserSession, open_browser
from runner.safety import system_resolve
from tests.httpserver import PageHTTPServer


@dataclass
class Response:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class PageServer:
    """A tiny threaded HTTP server whose pages are registered per test (unique paths)."""

    def __init__(self) -> None:
        self._routes: dict[str, Response] = {}
        self.hits: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, with_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.hits.append(self.path)
                    resp = server._routes.get(path)
                if resp is None:
                    resp = Response(b"not found", 404, {"Content-Type": "text/plain"})
                self.send_response(resp.status)
                for key, value in resp.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(resp.body)

            def do_GET(self) -> None:
                self._serve(True)

            def do_HEAD(self) -> None:
                self._serve(False)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._serve(True)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = PageHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def add(
        self,
        path: str,
        body: str | bytes,
        *,
        status: int = 200,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve ``body`` at ``path``; returns the absolute URL."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._routes[path] = Response(data, status, {"Content-Type": content_type,
                                                         **(headers or {})})
        return self.url(path)

    def page(self, path: str, html_body: str, *, title: str = "test") -> str:
        """Serve a small HTML document around ``html_body``."""
        return self.add(path, f"<!doctype html><html><head><meta charset=utf-8>"
                              f"<title>{title}</title></head><body>{html_body}</body></html>")

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.add(path, b"", status=status, headers={"Location": location})

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="session")
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aef-browser-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def local_resolve(host: str) -> list[str]:
    """DNS for tests: names from /etc/hosts only (localhost), never a query on the network.

    Chromium's own background requests (autofill, etc.) reach the guard's proxy with public
    names; in tests they must fail here instead of sending DNS packets off the machine.
    """
    if host.rstrip(".").lower() not in {"localhost", "localhost.localdomain"}:
        raise OSError(f"{host}: not resolved in tests")
    return await system_resolve(host)


def loopback_settings(**overrides: object) -> Settings:
    """Settings for tests that browse the local page server."""
    values: dict[str, object] = {"allow_loopback": True, "headless": True}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def session(work_dir: Path) -> AsyncIterator[BrowserSession]:
    """One Chromium per test module, loopback allowed."""
    settings = loopback_settings(work_dir=str(work_dir))
    async with open_browser(settings, work_dir=work_dir, resolver=local_resolve) as s:
        yield s
