"""A small local web site for runner tests: forms, a list, a flaky page, a slow page.

Served by a ThreadingHTTPServer on 127.0.0.1 (a free port), independent of the test's event
loop, so the runner's Chromium talks to it exactly as it would to a remote site.
"""

from __future__ import annotations

import html
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.httpserver import PageHTTPServer

EMAILS = [
    {"id": "e1", "subject": "Seed round for Acme", "category": "investor"},
    {"id": "e2", "subject": "Lunch on Friday?", "category": "personal"},
    {"id": "e3", "subject": "Series A intro", "category": "investor"},
]


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title></head><body><main>{body}</main></body></html>").encode()


FORM = """
<h1>Sign up</h1>
<form action="/done" method="get">
  <label>Full name <input name="name" id="name"></label>
  <label>Email <input name="email" id="email" type="email"></label>
  <label>Plan <select name="plan" id="plan"><option>Basic</option><option>Pro</option></select>
  </label>
  <label><input type="checkbox" name="terms" id="terms"> I agree to the terms</label>
  <button type="submit" id="submit">Submit</button>
</form>
"""

LOGIN = """
<h1>Sign in</h1>
<form action="/welcome" method="post">
  <label>Password <input type="password" name="pw" id="pw"></label>
  <button type="submit" id="signin">Sign in</button>
</form>
"""


@dataclass
class Site:
    """Request counters, and what the flaky page should do."""

    base_url: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str) -> int:
        with self.lock:
            self.hits[key] += 1
            return self.hits[key]


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            return

        def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            path = urlsplit(self.path).path
            if path == "/welcome":
                pw = form.get("pw", [""])[0]
                body = (f"<h1>Welcome</h1><p id='echo'>Your session key is {html.escape(pw)}"
                        "</p>")
                self._send(200, _page("Welcome", body))
                return
            self._send(404, _page("Not found", "<h1>Not found</h1>"))

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            path = parts.path
            if path == "/form":
                self._send(200, _page("Sign up", FORM))
            elif path == "/done":
                name = html.escape(query.get("name", ""))
                body = (f"<h1 id='result'>Thank you, {name}</h1>"
                        f"<p id='email'>{html.escape(query.get('email', ''))}</p>"
                        f"<p id='plan'>{html.escape(query.get('plan', ''))}</p>"
                        f"<p id='terms'>{'accepted' if query.get('terms') else 'declined'}</p>")
                self._send(200, _page("Done", body))
            elif path == "/login":
                self._send(200, _page("Sign in", LOGIN))
            elif path == "/emails":
                items = "".join(
                    f"<li class='email' data-id='{e['id']}'><a href='/email?id={e['id']}'>"
                    f"<span class='subject' data-field='subject'>{html.escape(e['subject'])}"
                    f"</span></a> <span class='category' data-field='category'>"
                    f"{e['category']}</span> <small data-field='id'>{e['id']}</small></li>"
                    for e in EMAILS)
                self._send(200, _page("Inbox", f"<h1>Inbox</h1><ul id='emails'>{items}</ul>"))
            elif path == "/email":
                email = next((e for e in EMAILS if e["id"] == query.get("id")), None)
                if email is None:
                    self._send(404, _page("Not found", "<h1>No such email</h1>"))
                    return
                site.count(f"email:{email['id']}")
                body = (f"<h1 id='subject'>{html.escape(email['subject'])}</h1>"
                        f"<p id='category'>{email['category']}</p>")
                self._send(200, _page(email["subject"], body))
            elif path == "/flaky":
                key = query.get("key", "default")
                fail = int(query.get("fail", "2"))
                if site.count(f"flaky:{key}") <= fail:
                    self._send(503, _page("Unavailable", "<h1>Service unavailable</h1>"))
                else:
                    self._send(200, _page("OK", "<h1 id='ok'>OK</h1>"))
            elif path == "/slow":
                time.sleep(min(10.0, int(query.get("ms", "1000")) / 1000))
                self._send(200, _page("Slow", "<h1 id='slow'>Slow page</h1>"))
            elif path == "/setcookie":  # the pool's isolation test: a cookie per execution
                value = html.escape(query.get("v", "x"))
                self._send(200, _page("Cookie", f"<h1 id='set'>{value}</h1>"),
                           headers={"Set-Cookie": f"tag={value}; Path=/"})
            elif path == "/cookies":
                cookies = html.escape(self.headers.get("Cookie") or "none")
                self._send(200, _page("Cookies", f"<p id='cookies'>{cookies}</p>"))
            elif path == "/page":
                n = html.escape(query.get("n", "0"))
                body = (f"<h1 id='title'>Page {n}</h1><label>Note <input id='note'></label>"
                        f"<button id='go' onclick=\"document.getElementById('title')"
                        f".textContent='Clicked {n}'\">Go</button>")
                self._send(200, _page(f"Page {n}", body))
            else:
                self._send(404, _page("Not found", "<h1>Not found</h1>"))

    return Handler


@contextmanager
def serve_site() -> Iterator[Site]:
    site = Site()
    server = PageHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="runner-test-site", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
