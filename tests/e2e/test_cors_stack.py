"""`aef dev` as a page on another local port meets it: allowed by default, said at start,
and a refused preflight is in the stack's log with its origin."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.e2e.conftest import RunningStack
from tests.waiting import wait_until

POLLING_HEADERS = "authorization,if-none-match"


def test_the_stack_says_which_origins_it_allows(stack: RunningStack) -> None:
    lines = [line for line in stack.log_file.read_text().splitlines()
             if line.startswith("CORS origins")]
    assert len(lines) == 1, stack.log_tail()
    assert "http://localhost:*" in lines[0] and "http://127.0.0.1:*" in lines[0]


def test_a_page_on_any_local_port_may_poll(stack: RunningStack, demo_token: str) -> None:
    path = f"/api/aef/live/{uuid.uuid4()}"
    for origin in ("http://127.0.0.1:8765", "http://localhost:5173"):
        preflight = httpx.options(f"{stack.url}{path}", headers={
            "origin": origin, "access-control-request-method": "GET",
            "access-control-request-headers": POLLING_HEADERS})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
        assert set(preflight.headers["access-control-allow-headers"].split(",")) == set(
            POLLING_HEADERS.split(","))
        reply = httpx.get(f"{stack.url}{path}", headers={
            "origin": origin, "authorization": f"Bearer {demo_token}"})
        assert reply.status_code == 404  # nobody's execution; the browser may read why
        assert reply.headers["access-control-allow-origin"] == origin
        exposed = reply.headers["access-control-expose-headers"].lower().split(",")
        assert {"etag", "ratelimit-remaining", "retry-after"} <= set(exposed)


def test_a_refused_preflight_is_logged_with_its_origin(stack: RunningStack) -> None:
    origin = f"https://{uuid.uuid4().hex[:8]}.evil.example"
    reply = httpx.options(f"{stack.url}/api/aef/transform", headers={
        "origin": origin, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type"})
    assert reply.status_code == 204 and "access-control-allow-origin" not in reply.headers
    def refusals() -> list[dict[str, object]]:
        return [entry for entry in (json.loads(line) for line in
                                    stack.log_file.read_text().splitlines()
                                    if line.startswith("{"))
                if entry.get("message") == "CORS preflight refused"
                and entry.get("origin") == origin]
    found = wait_until(refusals, within=10, interval=0.1,
                       what=f"the refusal in the stack log:\n{stack.log_tail()}")
    assert found[0]["path"] == "/api/aef/transform" and found[0]["refused"] == ["origin"]
