"""Network guard: the browser may only reach the public web (plus what settings allow).

Why two layers:

* ``context.route('**/*')`` sees every request the page makes (navigations, sub-resources,
  ``file:`` navigations) and can block it before it leaves, with the full URL for the log.
  But Playwright auto-continues redirect hops without calling the route handler (its
  crNetworkManager does ``Fetch.continueRequest`` when ``redirectedFrom`` is set; checked
  against Playwright 1.5x and covered by a test), and fulfilling with a 3xx does not route the
  follow-up either.
* So each guarded context also gets its own egress proxy on 127.0.0.1 (``proxy=`` with bypass
  ``<-loopback>``, so even loopback goes through it). Chromium sends every connection through
  it: redirect hops, WebSockets from workers, whatever the route layer misses. The proxy
  resolves the name itself, checks every address, and connects to the address it checked, so
  DNS rebinding between the check and the connection does not work either.

Once the route layer has let an http(s) origin through, that origin is taken out of the route
pattern (matched in the Playwright driver), so its later requests skip the round trip to this
process: the proxy still checks each of their connections, DNS included. A refused origin is
never taken out.

WebSockets created by pages are additionally checked by ``context.route_web_socket`` so a block
is reported with the ``ws://`` URL.

Which addresses and schemes are allowed is decided by ``aef.url_policy`` (pure, shared with the
transform, which warns about a navigation this guard will refuse); this module adds what needs
I/O: DNS, the Playwright route layer and the egress proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Route, WebSocketRoute

from aef.url_policy import (
    GuardPolicy,
    RequestKind,
    Verdict,
    check_host,
    check_resolved,
    check_url,
)

log = logging.getLogger("runner.safety")

OnBlock = Callable[[str, str], Any]

BLOCK_HEADER = "X-AEF-Blocked"
MAX_UNROUTED_ORIGINS = 64  # past that, new origins keep the route layer's round trip


@dataclass(frozen=True)
class BlockEvent:
    url: str
    reason: str
    category: str
    layer: str  # route | proxy | websocket
    at: float = field(default_factory=time.time)


Resolver = Callable[[str], Awaitable[list[str]]]


async def system_resolve(host: str) -> list[str]:
    """Every address getaddrinfo gives for ``host`` (asyncio, no blocking)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return seen


# --------------------------------------------------------------------------- the guard


class NetworkGuard:
    """Checks URLs (with DNS), installs the route layer on a context and runs its egress proxy.

    ``on_block(url, reason)`` is called for every block (sync or async callable); the events
    are also kept in :attr:`blocks`.
    """

    def __init__(
        self,
        policy: GuardPolicy,
        on_block: OnBlock | None = None,
        *,
        resolver: Resolver = system_resolve,
        dns_ttl: float = 30.0,
        connect_timeout: float = 15.0,
    ) -> None:
        self.policy = policy
        self.on_block = on_block
        # Secrets can sit in a URL (a token in a query string): the runner sets this so blocks
        # are logged, kept and reported redacted. runner.actions.ActionContext wires it up.
        self.redact: Callable[[str], str] = lambda text: text
        self.blocks: list[BlockEvent] = []
        self._resolve = resolver
        self._dns_ttl = dns_ttl
        self._dns_cache: dict[str, tuple[float, list[str] | None]] = {}
        self._connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Origins the route layer let through are taken out of its pattern, so their later
        # requests skip the round trip to this process (the proxy still checks every
        # connection, DNS included); `_routed` is the pattern installed now.
        self._context: BrowserContext | None = None
        self._routed: str | re.Pattern[str] = "**/*"
        self._approved: set[str] = set()
        self._rerouting: asyncio.Task[None] | None = None

    # ---- checks

    async def resolve(self, host: str) -> list[str] | None:
        """Addresses of ``host`` (cached ``dns_ttl`` seconds); None when it does not resolve."""
        now = time.monotonic()
        hit = self._dns_cache.get(host)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            addrs: list[str] | None = await self._resolve(host.rstrip("."))
        except (OSError, UnicodeError):
            addrs = None
        self._dns_cache[host] = (now + self._dns_ttl, addrs or None)
        return addrs or None

    async def complete(self, verdict: Verdict) -> Verdict:
        """Finish a pure verdict: resolve a host name and check every address."""
        if not verdict.allowed or not verdict.needs_dns or verdict.host is None:
            return verdict
        addrs = await self.resolve(verdict.host)
        if addrs is None:
            reason = f"{verdict.host} does not resolve"
            return Verdict(False, verdict.url, "dns", reason, verdict.host)
        return check_resolved(verdict, addrs, self.policy)

    async def check(self, url: str, *, kind: RequestKind = "navigation") -> Verdict:
        """Full check of a URL, DNS included."""
        return await self.complete(check_url(url, self.policy, kind=kind))

    def report(self, url: str, verdict: Verdict, layer: str) -> None:
        url, reason = self.redact(url), self.redact(verdict.reason)
        event = BlockEvent(url, reason, verdict.category, layer)
        self.blocks.append(event)
        log.warning("blocked %s request to %s: %s", layer, url, reason)
        if self.on_block is None:
            return
        try:
            result = self.on_block(url, reason)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception:
            log.exception("on_block callback failed")

    # ---- Playwright layer

    async def install(self, context: BrowserContext) -> None:
        """Route every request and WebSocket of ``context`` through the checks."""
        self._context = context
        await context.route(self._routed, self._on_route)
        await context.route_web_socket(re.compile(r".*"), self._on_websocket)

    def _approve(self, url: str, verdict: Verdict) -> None:
        """An http(s) origin the route layer let through is not routed again (the proxy
        remains: every connection to it is still checked, with its addresses)."""
        if not verdict.allowed or verdict.category in ("about", "dns") or self._context is None:
            return
        try:
            parts = urlsplit(url)
        except ValueError:
            return
        if parts.scheme not in ("http", "https") or "@" in parts.netloc or not parts.netloc:
            return
        origin = f"{parts.scheme}://{parts.netloc}/"
        if origin in self._approved or len(self._approved) >= MAX_UNROUTED_ORIGINS:
            return
        self._approved.add(origin)
        if self._rerouting is None or self._rerouting.done():
            self._rerouting = asyncio.ensure_future(self._reroute())
            self._tasks.add(self._rerouting)
            self._rerouting.add_done_callback(self._tasks.discard)

    async def _reroute(self) -> None:
        """Install the pattern without the approved origins, then drop the old one (a
        request in between matches either: it is checked)."""
        while self._context is not None:
            approved = sorted(self._approved)
            pattern = re.compile("^(?!(?:" + "|".join(map(re.escape, approved)) + "))")
            old, context = self._routed, self._context
            try:
                await context.route(pattern, self._on_route)
                self._routed = pattern
                await context.unroute(old, self._on_route)
            except Exception as exc:  # the context is closing: nothing left to route
                log.debug("route pattern not updated: %s", exc)
                return
            if len(self._approved) == len(approved):
                return

    async def _on_route(self, route: Route) -> None:
        request = route.request
        try:
            kind: RequestKind = "navigation" if request.is_navigation_request() else "request"
            verdict = await self.check(request.url, kind=kind)
        except Exception as exc:  # a guard bug must block, never let through
            verdict = Verdict(False, request.url, "error", f"guard error: {exc}")
        try:
            if verdict.allowed:
                await route.fallback()
                self._approve(request.url, verdict)
            elif verdict.category == "dns":
                await route.abort("namenotresolved")
            else:
                self.report(request.url, verdict, "route")
                await route.abort("blockedbyclient")
        except Exception as exc:  # page closed while we checked
            log.debug("route for %s not handled: %s", request.url, exc)

    async def _on_websocket(self, ws: WebSocketRoute) -> None:
        try:
            verdict = await self.check(ws.url, kind="websocket")
        except Exception as exc:
            verdict = Verdict(False, ws.url, "error", f"guard error: {exc}")
        try:
            if verdict.allowed:
                ws.connect_to_server()
            else:
                self.report(ws.url, verdict, "websocket")
                await ws.close(code=1008, reason="blocked by network guard")
        except Exception as exc:
            log.debug("websocket %s not handled: %s", ws.url, exc)

    # ---- egress proxy

    @property
    def proxy_settings(self) -> dict[str, str]:
        """The ``proxy=`` argument for ``browser.new_context`` (call :meth:`start` first)."""
        if self._server is None:
            raise RuntimeError("NetworkGuard.start() was not called")
        port = self._server.sockets[0].getsockname()[1]
        return {"server": f"http://127.0.0.1:{port}", "bypass": "<-loopback>"}

    async def start(self) -> None:
        """Start the egress proxy on an ephemeral loopback port."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", 0, limit=256 * 1024
            )

    async def close(self) -> None:
        """Stop the proxy and every tunnel it still holds."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._proxy_one(reader, writer)
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            TimeoutError,
        ):
            pass
        except Exception:
            log.exception("egress proxy error")
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _proxy_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = [*lines[0].split(" ", 2), "", ""][:3]
        if method.upper() == "CONNECT":
            hostport = target
            host, _, port_s = hostport.rpartition(":")
            port = int(port_s) if port_s.isdigit() else 443
            shown = f"{'https' if port == 443 else 'tcp'}://{hostport}"
            verdict = await self.complete(check_host(host, self.policy, url=shown, port=port))
        else:
            shown = target
            verdict = await self.check(target, kind="request")
            parts = urlsplit(target)
            port = parts.port or 80
        if not verdict.allowed and verdict.category == "dns":
            log.debug("proxy: %s does not resolve", verdict.host)
            writer.write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return
        if not verdict.allowed:
            self.report(shown, verdict, "proxy")
            await _send_block(writer, verdict)
            return
        upstream = await self._connect(verdict.addresses, port)
        if upstream is None:
            writer.write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return
        up_reader, up_writer = upstream
        try:
            if method.upper() == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
                await _pipe_both(reader, writer, up_reader, up_writer)
            else:
                up_writer.write(_origin_form(method, target, version, lines[1:]))
                await up_writer.drain()
                await _pipe_both(reader, writer, up_reader, up_writer, close_response=True)
        finally:
            with contextlib.suppress(Exception):
                up_writer.close()

    async def _connect(
        self, addresses: tuple[str, ...], port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for addr in addresses:  # only addresses that were checked: no second DNS lookup
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(addr, port, limit=256 * 1024), self._connect_timeout
                )
            except (TimeoutError, OSError):
                continue
        return None


async def _send_block(writer: asyncio.StreamWriter, verdict: Verdict) -> None:
    body = f"Blocked by the AEF network guard: {verdict.reason}\n".encode()
    writer.write(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + f"{BLOCK_HEADER}: {verdict.category}\r\n".encode()
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


_HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}


def _origin_form(method: str, target: str, version: str, header_lines: list[str]) -> bytes:
    """Rewrite an absolute-form proxy request for the origin server, one request per socket."""
    parts = urlsplit(target)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = [
        h for h in header_lines if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS
    ]
    headers.append("Connection: close")
    return f"{method} {path} {version}\r\n".encode("latin-1") + (
        "\r\n".join(headers) + "\r\n\r\n"
    ).encode("latin-1")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


async def _pipe_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy a response, marking its head ``Connection: close`` so the browser does not send a
    second (unchecked) request down the same proxied socket."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        kept = [
            h for h in lines[1:] if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS
        ]
        kept += ["Connection: close", "Proxy-Connection: close"]
        writer.write((lines[0] + "\r\n" + "\r\n".join(kept) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return
    await _pipe(reader, writer)


async def _pipe_both(
    c_reader: asyncio.StreamReader,
    c_writer: asyncio.StreamWriter,
    u_reader: asyncio.StreamReader,
    u_writer: asyncio.StreamWriter,
    *,
    close_response: bool = False,
) -> None:
    up = asyncio.ensure_future(_pipe(c_reader, u_writer))
    down_coro = _pipe_response(u_reader, c_writer) if close_response else _pipe(u_reader, c_writer)
    down = asyncio.ensure_future(down_coro)
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down not in done:  # the browser hung up: give the server a moment, then drop it
            await asyncio.wait({down}, timeout=5)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
