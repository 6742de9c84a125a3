"""Wrong types, unknown actions, unknown ids, oversized bodies → 4xx problem+json, never 500."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api.helpers import transform

UNKNOWN = str(uuid.uuid4())


@pytest.fixture
def ctx(api: Any, db: Any, new_user: Any) -> dict[str, Any]:
    user = new_user()
    created = transform(api, user)
    return {"user": user, "doc": created["aefDocumentId"], "exec": created["executionId"]}


CASES = [
    # (method, path template, body, expected status, expected code)
    ("POST", "/api/aef/transform", {}, 422, "validation_failed"),
    ("POST", "/api/aef/transform", {"sop": "not an object"}, 422, "validation_failed"),
    ("POST", "/api/aef/transform", {"sopId": "nope"}, 422, "validation_failed"),
    ("POST", "/api/aef/transform", {"sopId": UNKNOWN}, 404, "sop_not_found"),
    ("POST", "/api/aef/transform", {"sop": {}}, 422, None),
    ("POST", "/api/aef/transform", {"sop": {"meta": {}}, "extra": 1}, 422, "validation_failed"),
    ("POST", "/api/aef/execute", {"aefDocumentId": 42}, 422, "validation_failed"),
    ("POST", "/api/aef/execute", {"aefDocumentId": UNKNOWN}, 404, "document_not_found"),
    ("POST", "/api/aef/execute", {"aefDocumentId": "{doc}", "stepIds": ["no_such_step"]}, 422,
     "unknown_step"),
    ("POST", "/api/aef/execute", {"aefDocumentId": "{doc}", "executionId": UNKNOWN}, 404,
     "execution_not_found"),
    ("POST", "/api/aef/execute", {"aefDocumentId": "{doc}", "secrets": {"a": 1}}, 422,
     "validation_failed"),
    ("POST", "/api/aef/action/{exec}", {"action": "explode"}, 422, "validation_failed"),
    ("POST", "/api/aef/action/{exec}", {"action": "pause"}, 409, "invalid_state"),
    ("POST", "/api/aef/action/{exec}", {"action": "execute", "stepId": "nope"}, 422,
     "unknown_step"),
    ("POST", f"/api/aef/action/{UNKNOWN}", {"action": "pause"}, 404, "execution_not_found"),
    ("POST", "/api/aef/action/not-a-uuid", {"action": "pause"}, 422, "validation_failed"),
    ("POST", f"/api/aef/checkpoint/{UNKNOWN}", {"response": "approve"}, 404,
     "checkpoint_not_found"),
    ("POST", f"/api/aef/checkpoint/{UNKNOWN}", {"response": "maybe"}, 422, "validation_failed"),
    ("POST", f"/api/aef/checkpoint/{UNKNOWN}", {"response": ["approve"]}, 422,
     "validation_failed"),
    ("DELETE", f"/api/aef/stop/{UNKNOWN}", None, 404, "execution_not_found"),
    ("GET", f"/api/aef/logs/{UNKNOWN}", None, 404, "execution_not_found"),
    ("GET", f"/api/aef/live/{UNKNOWN}", None, 404, "execution_not_found"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), CASES)
def test_bad_input(api: Any, ctx: dict[str, Any], method: str, path: str, body: Any,
                   status: int, code: str | None) -> None:
    path = path.format(doc=ctx["doc"], exec=ctx["exec"])
    if isinstance(body, dict):
        body = {k: (v.format(doc=ctx["doc"], exec=ctx["exec"]) if isinstance(v, str) else v)
                for k, v in body.items()}
    reply = api.call(method, path, ctx["user"].token, body)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"].startswith("application/problem+json")
    if code:
        assert reply.body["code"] == code
    assert "Traceback" not in str(reply.body)


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "abc"}, {"limit": "100000"},
                                   {"level": "loud"}, {"after": "%%%"},
                                   {"after": "eyJub3BlIjogMX0"}])
def test_bad_log_queries(api: Any, ctx: dict[str, Any], query: dict[str, str]) -> None:
    reply = api.call("GET", f"/api/aef/logs/{ctx['exec']}", ctx["user"].token, query=query)
    assert reply.status == 422, reply.body
    assert reply.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", ["/api/aef/transform", "/api/aef/execute",
                                  "/api/aef/action/{exec}", f"/api/aef/checkpoint/{UNKNOWN}"])
def test_oversized_and_malformed_bodies(api: Any, ctx: dict[str, Any], path: str) -> None:
    path = path.format(exec=ctx["exec"])
    big = api.call("POST", path, ctx["user"].token, "x" * 2_000_000,
                   headers={"content-type": "application/json"})
    assert big.status == 413 and big.body["code"] == "payload_too_large"
    broken = api.call("POST", path, ctx["user"].token, '{"action": ',
                      headers={"content-type": "application/json"})
    assert broken.status == 400 and broken.body["code"] == "malformed_json"
    wrong_type = api.call("POST", path, ctx["user"].token, "a=b",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert wrong_type.status == 415


def test_no_token_on_every_endpoint(api: Any, ctx: dict[str, Any]) -> None:
    for method, path, body, _, _ in CASES:
        reply = api.call(method, path.format(doc=ctx["doc"], exec=ctx["exec"]), None, body)
        assert reply.status == 401, (path, reply.status)
        assert reply.headers["content-type"].startswith("application/problem+json")
