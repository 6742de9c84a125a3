"""The seed ticket's TypeScript shapes, kept: every response of every route and every live
message (from GET /live and as broadcast in realtime.messages) is checked field by field
against docs/api-contract.ts, and so is the OpenAPI spec the models generate."""

from __future__ import annotations

import json
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from tests.api.helpers import ScriptedRunner
from tests.api.scenario import DEMO_INPUTS, ROOT, started, transformed
from tests.api.typescript import Contract, Type, allows_null, check, describe, parse

CONTRACT = parse((ROOT / "docs" / "api-contract.ts").read_text())
UNKNOWN = "6f1c8f43-2d0c-4f7e-9a1b-5a2d7c9e8b10"


class Recorder:
    """Calls the API and keeps every reply with the route it answered."""

    def __init__(self, api: Any, user: Any) -> None:
        self.api, self.user = api, user
        self.replies: list[tuple[str, str, Any]] = []  # (method, route template, reply)

    def __call__(self, method: str, route: str, body: Any = None,
                 headers: dict[str, str] | None = None, **params: str) -> Any:
        """`route` is the spec's path template; `params` fill it, the rest is the query."""
        path = route.format(**params)
        query = {k: v for k, v in params.items() if f"{{{k}}}" not in route}
        reply = self.api.call(method, path, self.user.token, body, headers=headers,
                              query=query or None)
        self.replies.append((method, route, reply))
        return reply


def realtime_rows(db: Any, execution_id: str) -> list[dict[str, Any]]:
    from tests.integration.factories import broadcast_rows

    return broadcast_rows(db, execution_id, "event, payload")


def set_browser(runner: ScriptedRunner, browser: dict[str, Any]) -> None:
    with runner.tx() as conn:
        conn.execute("update aef_executions set browser = %s where id = %s",
                     (Jsonb(browser), runner.execution_id))
        runner._event(conn, "execution_update")


def recovery(runner: ScriptedRunner, error: dict[str, Any]) -> None:
    with runner.tx() as conn:
        conn.execute("update aef_executions set status = 'waiting_recovery', error = %s"
                     " where id = %s", (Jsonb(error), runner.execution_id))
        runner._event(conn, "error")


@pytest.fixture(scope="module")
def session(api: Any, db: Any) -> dict[str, Any]:
    """One run through every route, the way a frontend drives it, recording everything."""
    from tests.api.conftest import ApiUser, make_token
    from tests.integration.factories import create_user

    made = create_user(db)
    user = ApiUser(str(made.id), make_token(str(made.id), email=made.email), made.claims)
    call = Recorder(api, user)
    created = call("POST", "/api/aef/transform", {"sop": json.loads(
        (ROOT / "local/demo/workflows/investor-crm-demo.json").read_text())})
    assert created.status == 201, created.body
    execution_id, document_id = created.body["executionId"], created.body["aefDocumentId"]
    idle = call("GET", "/api/aef/live/{executionId}", executionId=execution_id)
    queued = call("POST", "/api/aef/execute", {"aefDocumentId": document_id,
                                                "executionId": execution_id, **DEMO_INPUTS})
    assert queued.status == 202, queued.body
    queued_live = call("GET", "/api/aef/live/{executionId}", executionId=execution_id)

    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    set_browser(runner, {"isReady": True, "currentUrl": "http://127.0.0.1:8000/mail/",
                         "lastAction": "Browser ready", "mode": "automatic"})
    runner.run_step("demo_login_flow", 20)
    set_browser(runner, {"isReady": True, "currentUrl": "http://127.0.0.1:8000/mail/inbox",
                         "screenshot": "https://s3.example/shot.png?sig=1",
                         "screenshotKey": "executions/x/1.png", "lastAction": None})
    checkpoint_id = runner.ask_checkpoint("collect_inbox")
    at_checkpoint = call("GET", "/api/aef/live/{executionId}", executionId=execution_id)
    answered = call("POST", "/api/aef/checkpoint/{checkpointId}", {"response": "approve"},
                    checkpointId=checkpoint_id)
    runner.resume_after_checkpoint()
    recovery(runner, {"message": "No element matches #compose",
                      "recovery_options": [{"action": "retry", "label": "Retry",
                                            "description": None},
                                           {"action": "stop", "label": "Stop"}],
                      "auto_retry_in": None})
    recovery(runner, {"message": "Timed out", "auto_retry_in": 30,
                      "recovery_options": [{"action": "skip", "label": "Skip",
                                            "description": "Go on without it"}]})
    in_recovery = call("GET", "/api/aef/live/{executionId}", executionId=execution_id)
    acted = call("POST", "/api/aef/action/{executionId}", {"action": "retry"},
                 executionId=execution_id)
    runner.resume_after_checkpoint()
    runner.complete()
    done = call("GET", "/api/aef/live/{executionId}", executionId=execution_id)
    call("GET", "/api/aef/logs/{executionId}", executionId=execution_id, limit="3")
    call("GET", "/api/aef/documents", limit="1")
    call("GET", "/api/aef/documents/{documentId}", documentId=document_id)
    call("GET", "/api/aef/documents/{documentId}", documentId=UNKNOWN)  # 404
    call("GET", "/api/aef/executions", status="completed,idle")

    other = transformed(api, user)
    started(api, user, other)
    call("DELETE", "/api/aef/stop/{executionId}", executionId=other["executionId"])
    call("POST", "/api/aef/action/{executionId}", {"action": "execute"},
         executionId=execution_id)  # 409
    call("GET", "/api/aef/logs/{executionId}", executionId=UNKNOWN)  # 404
    call("POST", "/api/aef/execute", {"aefDocumentId": "nope"})  # 422 with errors
    call("GET", "/api/aef/executions", status="exploded")  # 422 with errors
    call("GET", "/api/aef/execute")  # 405
    call("POST", "/api/aef/checkpoint/{checkpointId}", b"\xff",
         headers={"content-type": "application/json"}, checkpointId=UNKNOWN)  # 400
    return {"call": call, "execution": execution_id, "runner": runner, "idle": idle,
            "queued_live": queued_live, "at_checkpoint": at_checkpoint, "answered": answered,
            "in_recovery": in_recovery, "acted": acted, "done": done}


def _route_type(method: str, route: str, status: int) -> str | None:
    return CONTRACT.responses.get((method, route, status))


def test_every_response_has_the_contract_shape(session: dict[str, Any]) -> None:
    problems: list[str] = []
    seen: set[tuple[str, str, int]] = set()
    for method, route, reply in session["call"].replies:
        if reply.status >= 400:
            assert reply.headers["content-type"] == "application/problem+json"
            name = CONTRACT.problem
        else:
            name = _route_type(method, route, reply.status)
            seen.add((method, route, reply.status))
        assert name is not None, f"docs/api-contract.ts has no type for {method} {route}"
        problems += [f"{method} {route} {reply.status}: {p}"
                     for p in check(CONTRACT, ("ref", name), reply.body)]
    assert not problems, "\n".join(problems)
    assert seen == set(CONTRACT.responses), "every documented response was exercised"
    statuses = {reply.status for _, _, reply in session["call"].replies}
    assert {400, 404, 405, 409, 422} <= statuses


def test_every_live_message_has_the_contract_shape(session: dict[str, Any], db: Any) -> None:
    execution_id = session["execution"]
    snapshots = [session[k].body["message"] for k in
                 ("idle", "queued_live", "at_checkpoint", "in_recovery", "done")]
    polled = session["done"].body["events"]
    rows = realtime_rows(db, execution_id)
    assert [r["payload"] for r in rows] == polled, "the broadcast and GET /live agree"
    for row in rows:
        assert row["event"] == row["payload"]["type"]
    problems = [f"{where}: {p}" for where, message in
                [*(("snapshot", m) for m in snapshots), *(("event", m) for m in polled)]
                for p in check(CONTRACT, ("ref", "LiveMessage"), message)]
    assert not problems, "\n".join(problems)
    assert {m["type"] for m in polled} == {"execution_update", "checkpoint_required", "error",
                                          "execution_complete"}


def test_the_examples_the_issue_named(session: dict[str, Any]) -> None:
    answered = session["answered"].body
    assert answered == {"status": "success", "decision": "approved", "nextAction": "run_step"}
    queued = session["queued_live"].body["message"]
    assert queued["execution"]["status"] == "queued"
    assert queued["browser"] == {"screenshot": "", "currentUrl": "", "isReady": False}
    assert "currentStep" not in queued["execution"]
    events = session["done"].body["events"]
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert errors[0] == {"message": "No element matches #compose",
                         "recovery_options": [{"action": "retry", "label": "Retry"},
                                              {"action": "stop", "label": "Stop"}]}
    assert errors[1]["auto_retry_in"] == 30
    assert errors[1]["recovery_options"][0]["description"] == "Go on without it"
    shot = next(e["browser"] for e in events if e["browser"]["screenshot"])
    assert "lastAction" not in shot and shot["currentUrl"].endswith("/mail/inbox")
    assert all("error" not in e for e in events[:3])  # no error, no `error` key


# -- the OpenAPI spec says the same --------------------------------------------------------------
def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _nullable(schema: dict[str, Any]) -> bool:
    return {"type": "null"} in schema.get("anyOf", []) or schema.get("type") == "null"


def _without_null(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    rest = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    return _resolve(spec, rest[0]) if len(rest) == 1 else _resolve(spec, schema)


def _strip_null(contract: Contract, t: Type) -> Type:
    if t[0] == "ref":
        return _strip_null(contract, contract.types[t[1]])
    if t[0] == "union":
        rest = [b for b in t[1] if b != ("prim", "null")]
        return _strip_null(contract, rest[0]) if len(rest) == 1 else ("union", rest)
    return t


def _flat(contract: Contract, t: Type) -> list[Type]:
    """The members of a union, named unions expanded (`CheckpointAnswer | 'pause'`)."""
    t = _strip_null(contract, t)
    if t[0] == "union":
        return [m for b in t[1] for m in _flat(contract, b)]
    return [t]


def _literals(contract: Contract, t: Type) -> set[Any] | None:
    members = _flat(contract, t)
    if all(b[0] == "lit" for b in members):
        return {b[1] for b in members}
    return None


def compare(spec: dict[str, Any], t: Type, schema: dict[str, Any], path: str) -> list[str]:
    """How the OpenAPI schema differs from the TypeScript type (names, required, null, type)."""
    schema = _resolve(spec, schema)
    if allows_null(CONTRACT, t) != _nullable(schema) and t[0] != "prim":
        return [f"{path}: TypeScript {describe(t)} vs OpenAPI nullable={_nullable(schema)}"]
    t, schema = _strip_null(CONTRACT, t), _without_null(spec, schema)
    literals = _literals(CONTRACT, t)
    if literals is not None:
        found = set(schema.get("enum", [])) | ({schema["const"]} if "const" in schema else set())
        return [] if found == literals else [f"{path}: {sorted(literals)} vs {sorted(found)}"]
    kind, arg = t
    if kind == "prim":
        expected = {"string": {"string"}, "number": {"integer", "number"},
                    "boolean": {"boolean"}}.get(arg)
        if expected and schema.get("type") not in expected:
            return [f"{path}: TypeScript {arg} vs OpenAPI {schema.get('type')}"]
        return []
    if kind == "array":
        if schema.get("type") != "array":
            return [f"{path}: TypeScript array vs OpenAPI {schema.get('type')}"]
        return compare(spec, arg, schema["items"], f"{path}[]")
    if kind == "record" or "properties" not in schema:
        return []  # a free-form object (e.g. the source document) is not described further
    properties, required = schema["properties"], set(schema.get("required", []))
    problems = [f"{path}.{name}: in OpenAPI, not in docs/api-contract.ts"
                for name in properties if name not in arg]
    for name, (member, optional) in arg.items():
        if name not in properties:
            problems.append(f"{path}.{name}: in docs/api-contract.ts, not in OpenAPI")
            continue
        if optional == (name in required):
            problems.append(f"{path}.{name}: optional={optional} vs OpenAPI "
                            f"required={name in required}")
        problems += compare(spec, member, properties[name], f"{path}.{name}")
    return problems


def test_the_openapi_spec_has_the_contract_shapes() -> None:
    spec = json.loads((ROOT / "docs" / "openapi.json").read_text())
    problems: list[str] = []
    documented = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if not 200 <= int(status) < 300 or "content" not in response:
                    continue
                documented.add((method.upper(), path, int(status)))
                name = CONTRACT.responses.get((method.upper(), path, int(status)))
                if name is None:
                    problems.append(f"{method.upper()} {path} {status}: no type in the contract")
                    continue
                schema = response["content"]["application/json"]["schema"]
                problems += compare(spec, ("ref", name), schema, name)
    problem_schema = spec["components"]["schemas"]["ProblemDetails"]
    problems += compare(spec, ("ref", "Problem"), problem_schema, "Problem")
    assert documented == set(CONTRACT.responses)
    assert not problems, "\n".join(problems)


def test_the_checker_finds_each_kind_of_drift() -> None:
    """The drifts the seed's shapes were probed for are each caught."""
    good = {"type": "error", "timestamp": "t", "seq": 1,
            "execution": {"id": "e", "status": "running", "progress": 5},
            "browser": {"screenshot": "", "currentUrl": "", "isReady": True},
            "logs": [], "checkpoints": [],
            "error": {"message": "m", "recovery_options": []}}
    assert check(CONTRACT, ("ref", "LiveMessage"), good) == []
    drifts = {
        "currentStep null": ("execution", {"currentStep": None}),
        "currentUrl null": ("browser", {"currentUrl": None}),
        "screenshot missing": ("browser", {"screenshot": ...}),
        "lastAction null": ("browser", {"lastAction": None}),
        "progress as text": ("execution", {"progress": "5"}),
        "unknown status": ("execution", {"status": "exploded"}),
        "auto_retry_in null": ("error", {"auto_retry_in": None}),
    }
    for name, (part, change) in drifts.items():
        bad = json.loads(json.dumps(good))
        for key, value in change.items():
            if value is ...:
                del bad[part][key]
            else:
                bad[part][key] = value
        assert check(CONTRACT, ("ref", "LiveMessage"), bad), name
    assert check(CONTRACT, ("ref", "CheckpointResponse"),
                 {"status": "approved", "nextAction": "run_step", "decision": "approved"})
    assert check(CONTRACT, ("ref", "LiveMessage"), {**good, "error": None})
