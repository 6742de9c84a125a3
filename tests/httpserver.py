"""The local HTTP server the browser tests serve their pages from."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PageHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with a real listen backlog: Chromium opens several connections at
    once, and the default backlog of 5 drops some on a busy machine (a chrome-error page)."""

    request_queue_size = 128
    daemon_threads = True


def send_json(handler: BaseHTTPRequestHandler, document: Any, status: int = 200) -> None:
    """Answer a request with `document` as JSON (the local JWKS and metadata endpoints)."""
    body = json.dumps(document).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
