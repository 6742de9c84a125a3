"""Every problem `code` the API can answer is in one list (aef.errors.PROBLEM_CODES), and that
list, docs/architecture.md and the OpenAPI spec agree; the source raises no other code; each
4xx code is produced here, through the functions' Mangum handlers where a request can do it."""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aef.errors import PROBLEM_CODES
from tests.api.conftest import Reply, make_token
from tests.api.helpers import ScriptedRunner
from tests.api.scenario import DEMO_INPUTS, ROOT, admin_sql, demo_sop, started, transformed

UNKNOWN = "6f1c8f43-2d0c-4f7e-9a1b-5a2d7c9e8b10"
SOURCES = [*sorted((ROOT / "aef").rglob("*.py")), *sorted((ROOT / "functions").rglob("*.py")),
           ROOT / "local" / "gateway.py"]


def merged_spec() -> dict[str, Any]:
    from aef.openapi import load_specs, merge_specs

    return merge_specs(load_specs())


# -- one list, three places ------------------------------------------------------------------
def documented_codes() -> dict[str, int]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Error codes clients see", 1)[1].split("\n## ", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| `(\w+)` \| (\d{3}) \|", section, re.M)}


def test_the_docs_table_is_the_registry() -> None:
    assert documented_codes() == {code: c.status for code, c in PROBLEM_CODES.items()}


def test_the_openapi_spec_enumerates_the_registry() -> None:
    spec = merged_spec()
    enum = spec["components"]["schemas"]["ProblemDetails"]["properties"]["code"]["enum"]
    assert enum == sorted(PROBLEM_CODES)
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(spec)), "run python -m aef.openapi"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                schema = response["content"]["application/problem+json"]["schema"]
                codes = schema["allOf"][1]["properties"]["code"]["enum"]
                assert codes, (method, path, status)
                for code in codes:
                    assert PROBLEM_CODES[code].status == int(status), (method, path, code)


# -- no other code in the source -------------------------------------------------------------
def raised_codes(path: Path) -> set[str]:
    """String literals given as `code=...` or assigned to a name `code` (class defaults,
    `status, code, title = ...`, `code, detail = ...`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "code":
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                found.add(node.value.value)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = (zip(target.elts, node.value.elts, strict=False)
                         if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                         else [(target, node.value)])
                for name, value in pairs:
                    if (isinstance(name, ast.Name) and name.id == "code"
                            and isinstance(value, ast.Constant) and isinstance(value.value, str)):
                        found.add(value.value)
    return found


def test_the_source_raises_exactly_the_registered_codes() -> None:
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        for code in raised_codes(path):
            found.setdefault(code, []).append(str(path.relative_to(ROOT)))
    unregistered = {code: where for code, where in found.items() if code not in PROBLEM_CODES}
    assert not unregistered, f"add these to aef.errors.PROBLEM_CODES and the docs: {unregistered}"
    assert set(found) == set(PROBLEM_CODES), f"never raised: {set(PROBLEM_CODES) - set(found)}"


# -- each 4xx code, produced -------------------------------------------------------------------
class World:
    """One user with a transformed document, and the means to arrange the rest."""

    def __init__(self, api: Any, db: Any, new_user: Any) -> None:
        self.api, self.db, self.new_user = api, db, new_user
        self.user = new_user()
        self.created = transformed(api, self.user)
        self.doc, self.exec = self.created["aefDocumentId"], self.created["executionId"]

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        token = kw.pop("token", self.user.token)
        return self.api.call(method, path, token, body, **kw)

    def running(self) -> ScriptedRunner:
        fresh = transformed(self.api, self.user)
        started(self.api, self.user, fresh)
        runner = ScriptedRunner(self.db, fresh["executionId"])
        runner.claim()
        return runner

    def refusing_trigger(self, execution_id: str, sqlstate: str) -> Callable[[], None]:
        """The database refuses the next update of this one execution (a race the API's
        own checks cannot see); returns the undo."""
        name = f"refuse_{uuid.uuid4().hex[:12]}"
        admin_sql(self.db, f"""
            create function aef_private.{name}() returns trigger language plpgsql as $$
            begin raise exception 'refused by the test' using errcode = '{sqlstate}',
              detail = '{{"entity": "execution", "from": "idle", "to": "cancelled"}}'; end $$;
            create trigger {name} before update on public.aef_executions for each row
              when (new.id = '{execution_id}') execute function aef_private.{name}();""")
        return lambda: admin_sql(self.db, f"drop trigger {name} on public.aef_executions;"
                                          f" drop function aef_private.{name}();")


def _too_many_active(w: World) -> Reply:
    for _ in range(3):
        assert w.call("POST", "/api/aef/execute",
                      {"aefDocumentId": w.doc, **DEMO_INPUTS}).status == 202
    return w.call("POST", "/api/aef/execute", {"aefDocumentId": w.doc, **DEMO_INPUTS})


def _idempotency_key_unusable(w: World) -> Reply:
    from aef.service import _request_hash

    body = {"aefDocumentId": w.doc, **DEMO_INPUTS}
    admin_sql(w.db, "insert into aef_idempotency_keys (user_id, key, request_hash)"
                    " values (%s, 'half-written', %s)", (w.user.id, _request_hash(body)))
    return w.call("POST", "/api/aef/execute", body, headers={"idempotency-key": "half-written"})


def _idempotency_key_reused(w: World) -> Reply:
    key = {"idempotency-key": f"k-{uuid.uuid4().hex}"}
    assert w.call("POST", "/api/aef/execute", {"aefDocumentId": w.doc, **DEMO_INPUTS},
                  headers=key).status == 202
    return w.call("POST", "/api/aef/execute", {"aefDocumentId": w.doc, "stepIds": ["review_crm"],
                                               **DEMO_INPUTS}, headers=key)


def _checkpoint(w: World, *, answered: bool = False, expired: bool = False) -> Reply:
    runner = w.running()
    checkpoint = runner.ask_checkpoint("review_crm", timeout=1 if expired else 300,
                                       overdue=expired)
    if answered:
        assert w.call("POST", f"/api/aef/checkpoint/{checkpoint}",
                      {"response": "approve"}).status == 200
    return w.call("POST", f"/api/aef/checkpoint/{checkpoint}", {"response": "reject"})


def _runner_not_live(w: World) -> Reply:
    runner = w.running()
    admin_sql(w.db, "update aef_executions set lease_expires_at = now() - interval '1 second'"
                    " where id = %s", (runner.execution_id,))
    return w.call("POST", f"/api/aef/action/{runner.execution_id}", {"action": "pause"})


def _execution_finished(w: World) -> Reply:
    runner = w.running()
    runner.complete()
    return w.call("DELETE", f"/api/aef/stop/{runner.execution_id}")


def _refused_stop(sqlstate: str) -> Callable[[World], Reply]:
    def produce(w: World) -> Reply:
        undo = w.refusing_trigger(w.exec, sqlstate)
        try:
            return w.call("DELETE", f"/api/aef/stop/{w.exec}")
        finally:
            undo()
    return produce


def _invalid_sop(w: World) -> Reply:
    job = str(uuid.uuid4())
    admin_sql(w.db, "insert into public.sops (job_id, user_id, data) values (%s, %s, %s)",
              (job, w.user.id, json.dumps([1, 2, 3])))
    return w.call("POST", "/api/aef/transform", {"sopId": job})


def _rate_limited(w: World) -> Reply:
    assert w.call("GET", f"/api/aef/live/{w.exec}").status == 200
    admin_sql(w.db, "update aef_rate_limits set tokens = 0, updated_at = now() + interval '1 h'"
                    " where user_id = %s and bucket = 'read'", (w.user.id,))
    return w.call("GET", f"/api/aef/live/{w.exec}")


def _direct(method: str, path: str) -> Reply:
    """A path no route of the template has, sent to one function's handler anyway."""
    from functions.logs.app import handler
    from tests.apigw import apigw_event, invoke

    return Reply(*invoke(handler, apigw_event(method, path)))


def _cors_refused(w: World) -> Reply:
    from aef.http import create_app, lambda_handler
    from aef.settings import get_settings
    from functions.logs.app import router
    from tests.apigw import apigw_event, invoke

    settings = get_settings().model_copy(update={"cors_origins": ["https://app.example"]})
    handler = lambda_handler(create_app("logs", routers=[router], settings=settings))
    status, headers, body = invoke(handler, apigw_event("OPTIONS", f"/api/aef/logs/{w.exec}",
                                                        headers={
        "origin": "https://evil.example", "access-control-request-method": "GET"}))
    return Reply(status, headers, body)


PRODUCERS: dict[str, Callable[[World], Reply]] = {
    "malformed_json": lambda w: w.call("POST", "/api/aef/execute", b'{"aefDocumentId": "\xff"}',
                                       headers={"content-type": "application/json"}),
    "invalid_content_length": lambda w: w.call(
        "POST", "/api/aef/execute", {"aefDocumentId": w.doc}, headers={"content-length": "ten"}),
    "missing_token": lambda w: w.call("GET", f"/api/aef/live/{w.exec}", token=None),
    "invalid_token": lambda w: w.call("GET", f"/api/aef/live/{w.exec}", token="not.a.jwt"),
    "token_expired": lambda w: w.call("GET", f"/api/aef/live/{w.exec}",
                                      token=make_token(w.user.id, ttl=-60)),
    "unknown_user": lambda w: w.call("GET", f"/api/aef/live/{w.exec}",
                                     token=make_token(str(uuid.uuid4()))),
    "cors_refused": _cors_refused,
    "not_found": lambda w: _direct("GET", "/api/aef/logs/x/y"),
    "sop_not_found": lambda w: w.call("POST", "/api/aef/transform", {"sopId": UNKNOWN}),
    "document_not_found": lambda w: w.call("POST", "/api/aef/execute",
                                           {"aefDocumentId": UNKNOWN}),
    "execution_not_found": lambda w: w.call("GET", f"/api/aef/logs/{UNKNOWN}"),
    "checkpoint_not_found": lambda w: w.call("POST", f"/api/aef/checkpoint/{UNKNOWN}",
                                             {"response": "approve"}),
    "method_not_allowed": lambda w: w.call("GET", "/api/aef/execute"),
    "invalid_state": lambda w: w.call("POST", f"/api/aef/action/{w.exec}", {"action": "pause"}),
    "runner_not_live": _runner_not_live,
    "too_many_active": _too_many_active,
    "idempotency_key_reused": _idempotency_key_reused,
    "idempotency_key_unusable": _idempotency_key_unusable,
    "document_mismatch": lambda w: w.call("POST", "/api/aef/execute", {
        "aefDocumentId": transformed(w.api, w.user)["aefDocumentId"], "executionId": w.exec}),
    "checkpoint_already_answered": lambda w: _checkpoint(w, answered=True),
    "checkpoint_expired": lambda w: _checkpoint(w, expired=True),
    "execution_finished": _execution_finished,
    "illegal_transition": _refused_stop("AEF01"),
    "concurrent_update": _refused_stop("40001"),
    "payload_too_large": lambda w: w.call("POST", "/api/aef/transform",
                                          {"sop": {"x": "y" * 2_000_000}}),
    "unsupported_media_type": lambda w: w.call("POST", "/api/aef/execute", "a=b",
                                               headers={"content-type": "text/plain"}),
    "validation_failed": lambda w: w.call("POST", "/api/aef/execute", {"aefDocumentId": 42}),
    "missing_inputs": lambda w: w.call("POST", "/api/aef/execute", {"aefDocumentId": w.doc}),
    "unknown_step": lambda w: w.call("POST", "/api/aef/execute",
                                     {"aefDocumentId": w.doc, "stepIds": ["no_such_step"]}),
    "invalid_cursor": lambda w: w.call("GET", f"/api/aef/logs/{w.exec}",
                                       query={"after": "bm9wZQ"}),
    "invalid_sop": _invalid_sop,
    "rate_limited": _rate_limited,
}


def _rule_error(rule: str, variables: dict[str, Any]) -> Any:
    from aef import rules
    from aef.errors import AefError

    try:
        rules.evaluate(rule, variables)
    except AefError as exc:
        return exc
    raise AssertionError(f"{rule!r} was accepted")


def _append_only(db: Any) -> Any:
    from aef.errors import AefError

    row = admin_sql(db, "select id from aef_logs order by id desc limit 1")[0]
    try:
        with db.as_service() as conn:
            conn.execute("update aef_logs set message = 'rewritten' where id = %s", (row["id"],))
    except AefError as exc:
        return exc
    raise AssertionError("a log line was rewritten")


# Codes no route answers (docs/architecture.md says why); produced by what raises them.
NOT_FROM_A_ROUTE: dict[str, Callable[[Any], Any]] = {
    "invalid_rule": lambda db: _rule_error("email.category ==", {}),
    "missing_variable": lambda db: _rule_error('email.category == "x"', {}),
    "append_only": _append_only,
}
# Answered by the HTTP layer around a path, not by an operation of the spec.
LAYER_CODES = {"not_found", "method_not_allowed", "cors_refused"}


def test_every_client_error_code_has_a_producer() -> None:
    client_errors = {code for code, c in PROBLEM_CODES.items() if c.status < 500}
    assert client_errors == set(PRODUCERS) | set(NOT_FROM_A_ROUTE)


@pytest.fixture
def world(api: Any, db: Any, new_user: Any) -> World:
    return World(api, db, new_user)


def _operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return dict(item[method.lower()])
    raise AssertionError(f"{method} {path} is not in the spec")


@pytest.mark.parametrize("code", sorted(PRODUCERS))
def test_each_code_is_produced_and_documented_for_its_route(
        world: World, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    original = world.api.call

    def recording(method: str, path: str, *args: Any, **kw: Any) -> Reply:
        calls.append((method, path))
        return original(method, path, *args, **kw)

    monkeypatch.setattr(world.api, "call", recording)
    reply = PRODUCERS[code](world)
    assert reply.status == PROBLEM_CODES[code].status, reply.body
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.body["code"] == code and reply.body["type"] == f"urn:aef:problem:{code}"
    assert reply.body["status"] == reply.status and reply.body["detail"]
    if code == "method_not_allowed":
        assert reply.headers["allow"] == "POST"
    if code in LAYER_CODES:
        return
    method, path = calls[-1]
    responses = _operation(merged_spec(), method, path)["responses"]
    listed = responses[str(reply.status)]["content"]["application/problem+json"]["schema"]
    assert code in listed["allOf"][1]["properties"]["code"]["enum"], (method, path)


@pytest.mark.parametrize("code", sorted(NOT_FROM_A_ROUTE))
def test_codes_no_route_answers_come_from_their_component(db: Any, world: World,
                                                          code: str) -> None:
    error = NOT_FROM_A_ROUTE[code](db)
    assert (error.code, error.status) == (code, PROBLEM_CODES[code].status)


# -- bodies that are not JSON this API accepts: the class behind malformed_json ---------------
UNACCEPTABLE_BODIES = {
    "invalid UTF-8": b'{"response": "approve", "data": {"note": "\xff\xfe"}}',
    "latin-1 text": '{"response": "approve", "data": {"note": "caf\xe9"}}'.encode("latin-1"),
    "10k-deep nesting": b'{"response": "approve", "data": {"x": ' + b"[" * 10_000
                        + b"]" * 10_000 + b"}}",
    "5000-digit integer": b'{"response": "approve", "data": {"n": ' + b"9" * 5000 + b"}}",
    "truncated": b'{"response": "appr',
    "NaN": b'{"response": "approve", "data": {"n": NaN}}',
    "Infinity": b'{"response": "approve", "data": {"n": -Infinity}}',
    "1e999": b'{"response": "approve", "data": {"n": 1e999}}',
    "NUL escape": b'{"response": "approve", "data": {"note": "a\\u0000b"}}',
    "NUL escape in a key": b'{"response": "approve", "data": {"a\\u0000": 1}}',
    "unpaired surrogate": b'{"response": "approve", "data": {"note": "\\ud800"}}',
    "byte order mark": b'\xef\xbb\xbf{"response": "approve"}',
    "two documents": b'{"response": "approve"} {"response": "skip"}',
}


@pytest.mark.parametrize("name", sorted(UNACCEPTABLE_BODIES))
@pytest.mark.parametrize("route", ["/api/aef/transform", "/api/aef/execute",
                                   "/api/aef/action/{exec}", "/api/aef/checkpoint/{checkpoint}"])
def test_unacceptable_json_is_malformed_json_on_every_body_route(
        world: World, name: str, route: str) -> None:
    path = route.format(exec=world.exec, checkpoint=UNKNOWN)
    reply = world.call("POST", path, UNACCEPTABLE_BODIES[name],
                       headers={"content-type": "application/json"})
    assert reply.status == 400, reply.body
    assert reply.body["code"] == "malformed_json"
    assert reply.headers["content-type"] == "application/problem+json"


def test_json_that_is_fine_still_passes(world: World) -> None:
    runner = world.running()
    checkpoint = runner.ask_checkpoint("review_crm")
    body = {"response": "approve", "data": {"note": "caf\u00e9 \U0001f600 \\u0000 as text",
                                            "n": 2.5e-3, "deep": [[[[[[[[1]]]]]]]]}}
    reply = world.call("POST", f"/api/aef/checkpoint/{checkpoint}", body)
    assert reply.status == 200, reply.body
    stored = admin_sql(world.db, "select response from aef_checkpoints where id = %s",
                       (checkpoint,))[0]["response"]
    assert stored["data"] == body["data"]


def test_escaped_unicode_is_accepted_and_kept(world: World) -> None:
    title = "Caf\u00e9 \u00fcber \U0001f600"  # escapes, a surrogate pair among them
    raw = json.dumps({"sop": demo_sop(title)}, ensure_ascii=True).encode()
    assert b"\\ud83d\\ude00" in raw
    reply = world.call("POST", "/api/aef/transform", raw,
                       headers={"content-type": "application/json"})
    assert reply.status == 201, reply.body
    assert reply.body["aefDocument"]["meta"]["title"] == title
