"""The shared HTTP layer, exercised the way Lambda runs it: API Gateway v2 event -> Mangum."""

from __future__ import annotations

import json
import logging
import pathlib
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI, Path
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.types import Message

from aef.auth import Claims
from aef.errors import Conflict, Unauthorized
from aef.http import CurrentClaims, bind_execution_id, create_app, lambda_handler
from aef.openapi import load_specs, merge_specs
from aef.openapi import main as openapi_main
from aef.settings import Settings
from tests.apigw import apigw_event, invoke

SECRET = "http-layer-test-secret-with-more-than-32-bytes"
USER = "6f1c8f43-2d0c-4f7e-9a1b-5a2d7c9e8b10"
DELETED_USER = "00000000-0000-4000-8000-00000000dead"
LIMIT = 1024
ORIGIN = "https://app.example"


class ThingIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sop_id: str = Field(alias="sopId", min_length=1)
    count: int = 0


def _router() -> APIRouter:
    router = APIRouter(prefix="/api/aef")

    @router.post("/things")
    def create_thing(body: ThingIn, claims: CurrentClaims) -> dict[str, Any]:
        return {"sopId": body.sop_id, "count": body.count, "user": claims.sub}

    @router.get("/things/{executionId}")
    def read_thing(
        execution_id: Annotated[uuid.UUID, Path(alias="executionId")], claims: CurrentClaims
    ) -> dict[str, str]:
        bind_execution_id(execution_id)
        logging.getLogger("aef.test").info("reading thing")
        return {"executionId": str(execution_id)}

    @router.get("/boom")
    def boom() -> dict[str, str]:
        raise RuntimeError("secret internal detail 42")

    @router.get("/conflict")
    async def conflict() -> dict[str, str]:
        raise Conflict("already answered", code="invalid_state", decision="approve",
                       respondedAt=None)

    return router


def _refuse_deleted(claims: Claims) -> None:
    if claims.sub == DELETED_USER:
        raise Unauthorized("user no longer exists", code="unknown_user")


def _settings() -> Settings:
    return Settings(
        max_body_bytes=LIMIT, jwt_secret=SecretStr(SECRET), jwt_issuer=None, cors_origins=[ORIGIN]
    )


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(
        "test", routers=[_router()], settings=_settings(), claims_check=_refuse_deleted
    )


@pytest.fixture(scope="module")
def handler(app: FastAPI) -> Mangum:
    return Mangum(app, lifespan="off")


def _token(sub: str = USER, **extra: Any) -> str:
    now = int(time.time())
    payload = {
        "sub": sub,
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 600,
        **extra,
    }
    return jwt.encode(payload, SECRET, algorithm="HS256")


def _auth(sub: str = USER) -> dict[str, str]:
    return {"authorization": f"Bearer {_token(sub)}"}


def _assert_problem(
    status: int, headers: dict[str, str], body: Any, expected_status: int, code: str
) -> None:
    assert status == expected_status, body
    assert headers["content-type"].startswith("application/problem+json")
    assert body["status"] == expected_status
    assert body["code"] == code
    assert body["type"] == f"urn:aef:problem:{code}"
    assert body["title"]
    assert body["detail"]
    assert body["requestId"] == headers["x-request-id"]


def test_success_path(handler: Mangum) -> None:
    event = apigw_event("POST", "/api/aef/things", headers=_auth(), body={"sopId": "s1"})
    status, headers, body = invoke(handler, event)
    assert status == 200
    assert body == {"sopId": "s1", "count": 0, "user": USER}
    assert headers["x-request-id"] == event["requestContext"]["requestId"]


@pytest.mark.parametrize("content_length", [True, False])
def test_oversized_body_is_413(handler: Mangum, content_length: bool) -> None:
    body = {"sopId": "x" * (LIMIT * 2)}
    event = apigw_event(
        "POST", "/api/aef/things", headers=_auth(), body=body, content_length=content_length
    )
    assert ("content-length" in event["headers"]) is content_length
    status, headers, problem = invoke(handler, event)
    _assert_problem(status, headers, problem, 413, "payload_too_large")
    assert problem["instance"] == "/api/aef/things"


def test_lying_content_length_is_still_413(handler: Mangum) -> None:
    event = apigw_event(
        "POST",
        "/api/aef/things",
        headers={**_auth(), "content-length": "12"},
        body={"sopId": "x" * (LIMIT * 2)},
    )
    status, headers, problem = invoke(handler, event)
    _assert_problem(status, headers, problem, 413, "payload_too_large")


def test_body_at_the_limit_is_accepted(handler: Mangum) -> None:
    overhead = len(json.dumps({"sopId": ""}))
    body = {"sopId": "y" * (LIMIT - overhead)}
    assert len(json.dumps(body)) == LIMIT
    status, _, _ = invoke(
        handler, apigw_event("POST", "/api/aef/things", headers=_auth(), body=body)
    )
    assert status == 200


def test_bad_content_length_is_400(handler: Mangum) -> None:
    event = apigw_event(
        "POST",
        "/api/aef/things",
        headers={**_auth(), "content-length": "-5"},
        body={"sopId": "s1"},
    )
    status, headers, problem = invoke(handler, event)
    _assert_problem(status, headers, problem, 400, "invalid_content_length")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_body_is_415(handler: Mangum, content_type: str | None) -> None:
    headers = _auth()
    if content_type:
        headers["content-type"] = content_type
    event = apigw_event("POST", "/api/aef/things", headers=headers, body='{"sopId": "s1"}')
    status, resp_headers, problem = invoke(handler, event)
    _assert_problem(status, resp_headers, problem, 415, "unsupported_media_type")


def test_json_with_charset_is_accepted(handler: Mangum) -> None:
    headers = {**_auth(), "content-type": "application/json; charset=utf-8"}
    event = apigw_event("POST", "/api/aef/things", headers=headers, body='{"sopId": "s1"}')
    assert invoke(handler, event)[0] == 200


def test_malformed_json_is_400(handler: Mangum) -> None:
    headers = {**_auth(), "content-type": "application/json"}
    event = apigw_event("POST", "/api/aef/things", headers=headers, body='{"sopId": ')
    status, resp_headers, problem = invoke(handler, event)
    _assert_problem(status, resp_headers, problem, 400, "malformed_json")


def test_validation_error_names_the_fields(handler: Mangum) -> None:
    event = apigw_event("POST", "/api/aef/things", headers=_auth(), body={"count": "many"})
    status, headers, problem = invoke(handler, event)
    _assert_problem(status, headers, problem, 422, "validation_failed")
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(fields) == {"body.sopId", "body.count"}
    assert "required" in fields["body.sopId"].lower()
    assert "body.sopId" in problem["detail"]
    assert "many" not in json.dumps(problem)  # the input is not echoed back


def test_missing_body_is_422(handler: Mangum) -> None:
    status, headers, problem = invoke(
        handler, apigw_event("POST", "/api/aef/things", headers=_auth())
    )
    _assert_problem(status, headers, problem, 422, "validation_failed")
    assert problem["errors"][0]["field"] == "body"


def test_path_parameter_validation_names_the_field(handler: Mangum) -> None:
    event = apigw_event("GET", "/api/aef/things/not-a-uuid", headers=_auth())
    status, headers, problem = invoke(handler, event)
    _assert_problem(status, headers, problem, 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["path.executionId"]


@pytest.mark.parametrize(
    ("authorization", "code"),
    [  # tokens are minted when the test runs: one minted at collection can expire meanwhile
        (lambda: None, "missing_token"),
        (lambda: "Bearer not.a.jwt", "invalid_token"),
        (lambda: "Basic dXNlcjpwYXNz", "invalid_token"),
        (lambda: f"Bearer {_token(role='anon')}", "invalid_token"),
        (lambda: f"Bearer {_token(exp=int(time.time()) - 3600)}", "token_expired"),
        (lambda: f"Bearer {_token(DELETED_USER)}", "unknown_user"),
    ],
    ids=["none", "not_a_jwt", "basic", "anon_role", "expired", "deleted_user"],
)
def test_unauthenticated_is_401(
    handler: Mangum, authorization: Callable[[], str | None], code: str
) -> None:
    value = authorization()
    headers = {} if value is None else {"authorization": value}
    event = apigw_event("POST", "/api/aef/things", headers=headers, body={"sopId": "s1"})
    status, resp_headers, problem = invoke(handler, event)
    _assert_problem(status, resp_headers, problem, 401, code)
    if code != "unknown_user":
        assert resp_headers["www-authenticate"].startswith("Bearer")


def test_unknown_route_is_404(handler: Mangum) -> None:
    status, headers, problem = invoke(handler, apigw_event("GET", "/api/aef/nothing-here"))
    _assert_problem(status, headers, problem, 404, "not_found")
    assert problem["instance"] == "/api/aef/nothing-here"


def test_wrong_method_is_405(handler: Mangum) -> None:
    status, headers, problem = invoke(handler, apigw_event("DELETE", "/api/aef/boom"))
    _assert_problem(status, headers, problem, 405, "method_not_allowed")
    assert headers["allow"] == "GET"


def test_domain_error_keeps_its_code_and_extra_fields(handler: Mangum) -> None:
    status, headers, problem = invoke(handler, apigw_event("GET", "/api/aef/conflict"))
    _assert_problem(status, headers, problem, 409, "invalid_state")
    assert problem["detail"] == "already answered"
    assert problem["decision"] == "approve"
    assert "respondedAt" not in problem


def test_handler_bug_is_500_without_stack_trace(
    handler: Mangum, capsys: pytest.CaptureFixture[str]
) -> None:
    status, headers, problem = invoke(handler, apigw_event("GET", "/api/aef/boom"))
    _assert_problem(status, headers, problem, 500, "internal_error")
    text = json.dumps(problem)
    for leak in ("Traceback", "RuntimeError", "secret internal detail", "test_http_layer"):
        assert leak not in text
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    errors = [entry for entry in logged if entry["level"] == "ERROR"]
    assert errors, logged
    assert "secret internal detail 42" in errors[0]["exception"]
    assert errors[0]["requestId"] == headers["x-request-id"]


def test_500_response_carries_cors_headers(handler: Mangum) -> None:
    event = apigw_event("GET", "/api/aef/boom", headers={"origin": ORIGIN})
    status, headers, _ = invoke(handler, event)
    assert status == 500
    assert headers["access-control-allow-origin"] == ORIGIN


def test_cors_preflight_and_error_responses(handler: Mangum) -> None:
    preflight = apigw_event(
        "OPTIONS",
        "/api/aef/things",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
    )
    status, headers, _ = invoke(handler, preflight)
    assert status == 200
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in headers

    event = apigw_event(
        "POST", "/api/aef/things", headers={"origin": ORIGIN}, body={"sopId": "x" * 2 * LIMIT}
    )
    status, headers, _ = invoke(handler, event)
    assert status == 413
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in headers["access-control-expose-headers"].lower()

    evil = apigw_event("GET", "/api/aef/conflict", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in invoke(handler, evil)[1]


@pytest.mark.parametrize(
    ("supplied", "echoed"),
    [
        ("req-123_abc.DEF:9", True),
        ("x" * 129, False),
        ('has spaces and "quotes"', False),
        (None, False),
    ],
)
def test_request_id(handler: Mangum, supplied: str | None, echoed: bool) -> None:
    headers = {"x-request-id": supplied} if supplied else {}
    event = apigw_event("GET", "/api/aef/conflict", headers=headers, request_id="ApiGwId123=")
    _, resp_headers, problem = invoke(handler, event)
    expected = supplied if echoed else "ApiGwId123="
    assert resp_headers["x-request-id"] == expected
    assert problem["requestId"] == expected


async def test_request_id_without_api_gateway_is_a_uuid(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/api/aef/conflict")
    assert response.status_code == 409
    assert uuid.UUID(response.headers["x-request-id"]).version == 4


def test_logs_are_json_lines_without_secrets(
    handler: Mangum, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    token = _token()
    execution_id = str(uuid.uuid4())
    read = apigw_event(
        "GET", f"/api/aef/things/{execution_id}", headers={"authorization": f"Bearer {token}"}
    )
    status, headers, _ = invoke(handler, read)
    assert status == 200
    secret_body = {"sopId": "body-secret-value"}
    write = apigw_event(
        "POST", "/api/aef/things", headers={"authorization": f"Bearer {token}"}, body=secret_body
    )
    assert invoke(handler, write)[0] == 200

    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines and all(isinstance(line, dict) for line in lines)
    assert token not in err
    assert "authorization" not in err.lower()
    assert "body-secret-value" not in err
    assert SECRET not in err

    reading = next(line for line in lines if line["message"] == "reading thing")
    assert reading["requestId"] == headers["x-request-id"]
    assert reading["executionId"] == execution_id
    access = [line for line in lines if line["message"] == "request"]
    assert len(access) == 2
    assert access[0]["executionId"] == execution_id
    assert access[0]["status"] == 200
    assert access[0]["path"] == f"/api/aef/things/{execution_id}"
    assert access[0]["userId"] == USER
    assert access[0]["durationMs"] >= 0
    assert access[1]["requestId"] != access[0]["requestId"]


def test_lambda_handler_sends_problems_as_text(app: FastAPI) -> None:
    handler = lambda_handler(app)
    result = handler(apigw_event("GET", "/api/aef/conflict"), None)
    assert result["isBase64Encoded"] is False
    assert json.loads(result["body"])["code"] == "invalid_state"


def test_openapi_documents_problem_responses(app: FastAPI) -> None:
    spec = app.openapi()
    assert spec["openapi"].startswith("3.1")
    schemas = spec["components"]["schemas"]
    assert "ProblemDetails" in schemas
    assert "HTTPValidationError" not in schemas
    post = spec["paths"]["/api/aef/things"]["post"]
    for status in ("400", "401", "413", "415", "422", "500"):
        content = post["responses"][status]["content"]
        assert list(content) == ["application/problem+json"]
        schema = content["application/problem+json"]["schema"]
        assert schema["allOf"][0] == {"$ref": "#/components/schemas/ProblemDetails"}
        assert schema["allOf"][1]["properties"]["code"]["enum"]
    assert post["security"] == [{"HTTPBearer": []}]
    conflict = spec["paths"]["/api/aef/conflict"]["get"]["responses"]
    assert "401" not in conflict and "413" not in conflict
    assert spec == app.openapi()  # stable across calls


def test_merge_specs_is_deterministic_and_refuses_conflicts() -> None:
    first = create_app("one", routers=[_router()], settings=_settings())
    other = APIRouter()

    @other.get("/api/aef/other")
    def other_route() -> ThingIn:
        return ThingIn(sopId="s")

    second = create_app("two", routers=[other], settings=_settings())
    merged = merge_specs([first.openapi(), second.openapi()], title="AEF", version="1")
    assert merged["openapi"] == "3.1.0"
    assert list(merged["paths"]) == sorted(merged["paths"])
    assert "/api/aef/other" in merged["paths"] and "/api/aef/things" in merged["paths"]
    again = merge_specs([second.openapi(), first.openapi()], title="AEF", version="1")
    assert json.dumps(merged, sort_keys=True) == json.dumps(again, sort_keys=True)

    with pytest.raises(ValueError, match="defined by more than one app"):
        merge_specs([first.openapi(), first.openapi()], title="AEF", version="1")


def test_openapi_command_writes_and_checks(tmp_path: pathlib.Path) -> None:
    """The real function apps merge cleanly; --check notices a stale file."""
    output = tmp_path / "openapi.json"
    assert openapi_main(["--check", "--output", str(output)]) == 1  # missing counts as stale
    assert openapi_main(["--output", str(output)]) == 0
    first = output.read_text()
    assert openapi_main(["--check", "--output", str(output)]) == 0
    spec = json.loads(first)
    assert spec["openapi"] == "3.1.0"
    for path in (
        "/api/aef/transform",
        "/api/aef/execute",
        "/api/aef/action/{executionId}",
        "/api/aef/checkpoint/{checkpointId}",
        "/api/aef/stop/{executionId}",
        "/api/aef/logs/{executionId}",
        "/api/aef/live/{executionId}",
    ):
        assert path in spec["paths"]
    output.write_text(first.replace('"AEF API"', '"Stale API"'))
    assert openapi_main(["--check", "--output", str(output)]) == 1


def test_openapi_command_refuses_a_missing_app() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_specs(["functions.transform.app", "functions.no_such_function.app"])


async def test_streamed_body_is_counted_across_chunks(app: FastAPI) -> None:
    """Chunked upload, no Content-Length: the limit trips mid-stream, before the app reads."""
    chunks = [b'{"sopId": "', *([b"z" * 300] * 5), b'"}']
    received: list[Message] = []

    async def receive() -> Message:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        received.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/aef/things",
        "raw_path": b"/api/aef/things",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
            (b"authorization", f"Bearer {_token()}".encode()),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in received if m["type"] == "http.response.start")
    body = json.loads(b"".join(m.get("body", b"") for m in received if "body" in m))
    assert start["status"] == 413
    assert body["code"] == "payload_too_large"
    assert len(chunks) < 3  # it stopped reading once over the limit
