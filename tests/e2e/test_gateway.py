"""The local API gateway routes exactly template.yaml's routes, the way API Gateway does.

In-process (no database needed): a request without a token is answered by the function itself
(401 problem+json with the function's X-Request-Id), which proves the gateway reached the
handler the template names; anything else is the gateway's 404 (or 405 for a known path).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from local.gateway import (
    ROOT,
    Gateway,
    RouteSpec,
    RouteTable,
    TemplateError,
    build_event,
    load_template,
    routes_from_template,
)

ROUTES = routes_from_template(load_template())
_HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def concrete(path: str) -> str:
    """A request path for a route: every {param} becomes a fresh uuid."""
    parts = [str(uuid.uuid4()) if p.startswith("{") else p for p in path.split("/")]
    return "/".join(parts)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    gateway = Gateway.from_template()
    gateway.load_all()
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:54321") as http:
        yield http
    gateway.close()


def test_the_template_has_the_api_routes() -> None:
    keys = {r.route_key for r in ROUTES}
    assert {"POST /api/aef/transform", "POST /api/aef/execute",
            "POST /api/aef/checkpoint/{checkpointId}", "DELETE /api/aef/stop/{executionId}",
            "GET /api/aef/logs/{executionId}", "GET /api/aef/live/{executionId}"} <= keys
    assert all(r.path.startswith("/api/aef/") for r in ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.route_key)
async def test_every_template_route_reaches_its_function(
        client: httpx.AsyncClient, route: RouteSpec) -> None:
    response = await client.request(route.method, concrete(route.path))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "missing_token"
    assert response.headers["x-request-id"]  # set by the function's own middleware
    assert response.headers["apigw-requestid"]


def test_function_apps_declare_exactly_the_template_routes() -> None:
    """No route the template forgets, none it invents: each app's routes == its events."""
    import importlib

    by_module: dict[str, set[tuple[str, str]]] = {}
    for route in ROUTES:
        by_module.setdefault(route.module, set()).add((route.method, route.path))
    for module, expected in by_module.items():
        schema = importlib.import_module(module).app.openapi()
        declared = {(method.upper(), path) for path, item in schema["paths"].items()
                    for method in item if method in _HTTP_METHODS}
        assert declared == expected, module


async def test_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/aef/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["instance"] == "/api/aef/nothing-here"


async def test_known_path_with_another_method_is_a_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/aef/transform")  # the template has only POST
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "POST"
    assert response.json()["code"] == "method_not_allowed"


async def test_oversized_request_is_refused_before_the_function(
        client: httpx.AsyncClient) -> None:
    response = await client.post("/api/aef/transform", content=b"x" * (10 * 1024 * 1024 + 1),
                                 headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


TEMPLATE_WITH_TAGS = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Conditions:
  HasSecret: !Not [!Equals [!Ref Secret, ""]]
Globals:
  Function:
    Handler: app.handler
    Timeout: 9
    Environment:
      Variables:
        TABLE: !Sub "${AWS::StackName}-table"
        SECRET: !If [HasSecret, !Ref Secret, !Ref AWS::NoValue]
        ORIGINS: !Sub
          - '["${Origins}"]'
          - Origins: !Join ['","', !Ref CorsOrigins]
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  Logs:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/logs/
      Role: !GetAtt LogsRole.Arn
      Events:
        Read:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: get, Path: "/api/aef/logs/{executionId}"}
        Anything:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: ANY, Path: "/api/aef/logs/{proxy+}"}
  Sweeper:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sweeper/
      Events:
        Every:
          Type: Schedule
          Properties: {Schedule: rate(1 minute)}
"""


def test_cloudformation_tags_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE_WITH_TAGS)
    template = load_template(path)
    routes = routes_from_template(template, ROOT)
    assert [(r.method, r.path, r.function, r.module, r.attribute, r.timeout_seconds)
            for r in routes] == [
        ("GET", "/api/aef/logs/{executionId}", "Logs", "functions.logs.app", "handler", 9),
        ("ANY", "/api/aef/logs/{proxy+}", "Logs", "functions.logs.app", "handler", 9),
    ]


def test_a_handler_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE_WITH_TAGS.replace("functions/logs/", "functions/nope/"))
    with pytest.raises(TemplateError, match="does not exist"):
        routes_from_template(load_template(path), ROOT)


def test_most_specific_route_wins() -> None:
    def spec(method: str, path: str, name: str) -> RouteSpec:
        return RouteSpec(method, path, name, "m", "h")

    table = RouteTable([
        spec("ANY", "$default", "fallback"),
        spec("ANY", "/api/{proxy+}", "greedy"),
        spec("GET", "/api/items/{id}", "item"),
        spec("ANY", "/api/items/{id}", "any-item"),
        spec("GET", "/api/items/special", "special"),
    ])

    def name(method: str, path: str) -> str | None:
        found = table.match(method, path)
        return found[0].function if found else None

    assert name("GET", "/api/items/special") == "special"
    assert name("GET", "/api/items/42") == "item"
    assert name("POST", "/api/items/42") == "any-item"
    assert name("GET", "/api/items/42/parts") == "greedy"
    assert name("GET", "/elsewhere") == "fallback"
    found = table.match("GET", "/api/items/a%20b")
    assert found is not None and found[1] == {"id": "a b"}


def test_event_is_an_http_api_v2_event() -> None:
    scope = {
        "type": "http", "method": "POST", "path": "/api/aef/logs/abc",
        "raw_path": b"/api/aef/logs/abc", "query_string": b"a=1&a=2&b=x%20y",
        "headers": [(b"host", b"127.0.0.1:54321"), (b"cookie", b"s=1; t=2"),
                    (b"content-type", b"application/octet-stream"), (b"x-multi", b"1"),
                    (b"x-multi", b"2")],
        "client": ("10.0.0.9", 5555), "server": ("127.0.0.1", 54321), "scheme": "http",
        "http_version": "1.1",
    }
    route = RouteSpec("POST", "/api/aef/logs/{executionId}", "Logs", "m", "handler")
    event = build_event(scope, b"\x00\xff", route, {"executionId": "abc"}, request_id="rid")
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /api/aef/logs/{executionId}"
    assert event["rawPath"] == "/api/aef/logs/abc"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["s=1", "t=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "1,2"
    assert event["pathParameters"] == {"executionId": "abc"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\xff"
    assert event["requestContext"]["http"]["sourceIp"] == "10.0.0.9"
    assert event["requestContext"]["requestId"] == "rid"


async def test_cors_preflight_is_answered_from_the_template() -> None:
    gateway = Gateway.from_template(cors_origins=["http://localhost:3000"])
    transport = httpx.ASGITransport(app=gateway)
    preflight = {"access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            allowed = await http.options("/api/aef/transform",
                                         headers={"origin": "http://localhost:3000", **preflight})
            other = await http.options("/api/aef/transform",
                                       headers={"origin": "https://evil.example", **preflight})
            no_route = await http.options("/api/aef/unknown",
                                          headers={"origin": "http://localhost:3000",
                                                   **preflight})
    finally:
        gateway.close()
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert allowed.headers["access-control-allow-headers"] == "authorization,content-type"
    assert other.status_code == 204
    assert "access-control-allow-origin" not in other.headers
    assert no_route.status_code == 404
