"""The local HTTP server the browser tests serve their pages from."""

from __future__ import annotations

from http.server import ThreadingHTTPServer


class PageHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with a real listen backlog: Chromium opens several connections at
    once, and the default backlog of 5 drops some on a busy machine (a chrome-error page)."""

    request_queue_size = 128
    daemon_threads = True
