"""Browser-ready HTTP: CORS origins from settings, the allowed/exposed headers, refused
preflights logged — through a Mangum handler, the local gateway and template.yaml alike."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from mangum import Mangum
from pydantic import SecretStr, ValidationError

from aef.http import (
    CORS_ALLOW_HEADERS,
    CORS_EXPOSE_HEADERS,
    CORS_METHODS,
    OriginPolicy,
    create_app,
)
from aef.settings import Settings
from local.gateway import Gateway, cors_from_template, load_template
from tests.apigw import apigw_event, invoke

LOCAL = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
BROWSER_HEADERS = "authorization,content-type,if-none-match,idempotency-key,x-request-id"


@pytest.mark.parametrize(("raw", "parsed"), [
    ("http://127.0.0.1:8765", ["http://127.0.0.1:8765"]),
    ("http://localhost:5173, http://127.0.0.1:8765/", ["http://localhost:5173",
                                                       "http://127.0.0.1:8765"]),
    ('["https://app.example", "http://localhost:*"]', ["https://app.example",
                                                       "http://localhost:*"]),
    ("*", ["*"]),
    ("", []),
])
def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str,
                                           parsed: list[str]) -> None:
    monkeypatch.setenv("AEF_CORS_ORIGINS", raw)
    assert Settings().cors_origins == parsed


@pytest.mark.parametrize("raw", ["http://app.example/path", "app.example", '["ftp://x.example"]',
                                 "[not json"])
def test_a_bad_origin_is_a_clear_settings_error(monkeypatch: pytest.MonkeyPatch,
                                                raw: str) -> None:
    monkeypatch.setenv("AEF_CORS_ORIGINS", raw)
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings()


@pytest.mark.parametrize(("origin", "allowed"), [
    ("http://localhost:5173", True), ("http://127.0.0.1:8765", True), ("http://[::1]:3000", True),
    ("https://localhost:5173", False), ("http://localhost", False),
    ("http://localhost:80.evil.example", False), ("http://127.0.0.1.evil.example:80", False),
    ("http://evil.example", False),
])
def test_local_origin_patterns(origin: str, allowed: bool) -> None:
    assert OriginPolicy(tuple(LOCAL)).allows(origin) is allowed


def test_subdomain_pattern_and_any_origin() -> None:
    sub = OriginPolicy(("https://*.example.com",))
    assert sub.allows("https://app.example.com")
    assert not sub.allows("https://example.com") and not sub.allows("https://a.b.example.com")
    assert OriginPolicy(("*",)).allows("https://anything.example")


def _handler(origins: list[str]) -> Mangum:
    router = APIRouter()

    @router.get("/api/aef/live/{executionId}")
    def live(executionId: str) -> Any:
        return {"ok": True}

    settings = Settings(jwt_secret=SecretStr("x" * 40), cors_origins=origins)
    return Mangum(create_app("cors test", routers=[router], settings=settings), lifespan="off")


def _preflight(origin: str, headers: str = BROWSER_HEADERS) -> dict[str, Any]:
    return apigw_event("OPTIONS", "/api/aef/live/abc", headers={
        "origin": origin, "access-control-request-method": "GET",
        "access-control-request-headers": headers})


def test_function_allows_local_pages_and_the_polling_headers() -> None:
    handler = _handler(LOCAL)
    status, headers, _ = invoke(handler, _preflight("http://127.0.0.1:8765"))
    assert status == 200
    assert headers["access-control-allow-origin"] == "http://127.0.0.1:8765"
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert set(BROWSER_HEADERS.split(",")) <= allowed

    status, headers, _ = invoke(handler, apigw_event(
        "GET", "/api/aef/live/abc", headers={"origin": "http://localhost:5173"}))
    assert status == 200
    assert headers["access-control-allow-origin"] == "http://localhost:5173"
    exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
    assert {"etag", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after",
            "x-request-id"} <= exposed


@pytest.mark.parametrize(("origin", "headers", "refused"), [
    ("https://evil.example", BROWSER_HEADERS, ["origin"]),
    ("http://localhost:5173", "authorization,x-secret-header", ["headers"]),
])
def test_function_refuses_a_preflight_with_a_logged_problem(
        capsys: pytest.CaptureFixture[str], origin: str, headers: str,
        refused: list[str]) -> None:
    status, resp_headers, problem = invoke(_handler(LOCAL), _preflight(origin, headers))
    assert status == 403
    assert resp_headers["content-type"] == "application/problem+json"
    assert problem["code"] == "cors_refused"
    assert "access-control-allow-origin" not in resp_headers
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    refusals = [line for line in lines if line["message"] == "CORS preflight refused"]
    assert len(refusals) == 1
    assert refusals[0]["origin"] == origin and refusals[0]["refused"] == refused
    assert refusals[0]["level"] == "WARNING" and refusals[0]["requestId"]


def test_template_cors_lists_are_the_http_layer_lists() -> None:
    policy = cors_from_template(load_template())
    assert policy is not None
    assert set(policy.allow_methods) == set(CORS_METHODS)
    assert set(policy.allow_headers) == {h.lower() for h in CORS_ALLOW_HEADERS}
    assert {h.lower() for h in policy.expose_headers} == {h.lower() for h in CORS_EXPOSE_HEADERS}


async def test_gateway_cors_for_local_pages(capsys: pytest.CaptureFixture[str]) -> None:
    gateway = Gateway.from_template(cors_origins=LOCAL)
    transport = httpx.ASGITransport(app=gateway)
    preflight = {"access-control-request-method": "GET",
                 "access-control-request-headers": BROWSER_HEADERS}
    path = "/api/aef/live/6f1c8f43-2d0c-4f7e-9a1b-5a2d7c9e8b10"
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            vite = await http.options(path, headers={"origin": "http://localhost:5173",
                                                     **preflight})
            evil = await http.options(path, headers={"origin": "https://evil.example",
                                                     **preflight})
            # the function answers 401 (no token): the gateway's CORS headers are on it
            actual = await http.get(path, headers={"origin": "http://127.0.0.1:8765"})
            other = await http.get(path, headers={"origin": "https://evil.example"})
            # the gateway's own problems are readable by the page too
            wrong_method = await http.get("/api/aef/transform",
                                          headers={"origin": "http://localhost:5173"})
            too_large = await http.post("/api/aef/transform", content=b"x" * (10 * 2**20 + 1),
                                        headers={"origin": "http://localhost:5173",
                                                 "content-type": "application/json"})
    finally:
        gateway.close()
    assert vite.status_code == 204
    assert vite.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert set(vite.headers["access-control-allow-headers"].split(",")) == set(
        BROWSER_HEADERS.split(","))
    assert evil.status_code == 204 and "access-control-allow-origin" not in evil.headers
    assert actual.status_code == 401
    assert actual.headers["access-control-allow-origin"] == "http://127.0.0.1:8765"
    exposed = {h.lower() for h in actual.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
            "retry-after", "x-request-id"} <= exposed
    assert "access-control-allow-origin" not in other.headers
    for own in (wrong_method, too_large):
        assert own.status_code in (405, 413)
        assert own.headers["access-control-allow-origin"] == "http://localhost:5173"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
             if line.startswith("{")]
    refusals = [line for line in lines if line["message"] == "CORS preflight refused"]
    assert [r["origin"] for r in refusals] == ["https://evil.example"]
    assert refusals[0]["path"] == path and refusals[0]["refused"] == ["origin"]
