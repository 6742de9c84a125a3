"""Schema fuzzing: schemathesis generates requests from docs/openapi.json for every function.

Requests are built by schemathesis (`case.call`) and delivered through a requests adapter that
turns them into API Gateway HTTP API events for the functions' Mangum handlers, so generated
data goes through exactly the production path: event -> Mangum -> middleware -> FastAPI ->
service -> Postgres (RLS). Every response is checked with schemathesis's own checks: no 5xx,
a documented status, the documented content type (problem+json for errors) and the documented
body schema.

Each endpoint family gets at least REQUESTS_PER_FAMILY requests, positive and negative
(schema-violating) data mixed, made with a valid token of a real user whose own ids (documents,
executions in every state, checkpoints, stored SOPs, step ids) are swapped into about half of
the generated requests; the rest carry random ids. Generation is derandomized, so a failure
reproduces on every run. Failures are collected (not raised inside Hypothesis, so there is no
shrinking phase and the request count is fixed) and reported together at the end.
"""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from urllib3 import HTTPResponse
from urllib3._collections import HTTPHeaderDict

from tests.api.helpers import fixture_sop, transform
from tests.apigw import LambdaContext, apigw_event, ensure_event_loop
from tests.hardening.conftest import settings_override

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
BASE_URL = "https://abc123.execute-api.us-east-1.amazonaws.com"
REQUESTS_PER_FAMILY = 1000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

FAMILIES: dict[str, tuple[tuple[str, str], ...]] = {
    "transform": (("POST", "/api/aef/transform"),),
    "execute": (("POST", "/api/aef/execute"), ("POST", "/api/aef/action/{executionId}")),
    "checkpoint": (("POST", "/api/aef/checkpoint/{checkpointId}"),),
    "stop": (("DELETE", "/api/aef/stop/{executionId}"),),
    "logs": (("GET", "/api/aef/logs/{executionId}"), ("GET", "/api/aef/live/{executionId}")),
}


# --------------------------------------------------------------------------------------------
# Transport: requests -> API Gateway v2 event -> Mangum handler -> requests.Response
# --------------------------------------------------------------------------------------------


class MangumAdapter(HTTPAdapter):
    """A requests adapter that delivers each request to the function owning its route."""

    def __init__(self, handlers: Mapping[tuple[str, str], Callable[..., dict[str, Any]]]) -> None:
        super().__init__()
        self.handlers = handlers

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        url = urlsplit(request.url or "")
        method = (request.method or "GET").upper()
        # API Gateway hands the function the decoded path (rawPath keeps the encoded one)
        path = unquote(url.path)
        parts = path.split("/")
        family = parts[3] if len(parts) > 3 else ""
        handler = self.handlers[(method, family)]
        body: bytes | None
        if request.body is None:
            body = None
        elif isinstance(request.body, bytes):
            body = request.body
        else:
            body = str(request.body).encode()
        query: dict[str, str] = {}
        for name, value in parse_qsl(url.query, keep_blank_values=True):
            # API Gateway joins repeated parameters with commas
            query[name] = f"{query[name]},{value}" if name in query else value
        headers = {name: value if isinstance(value, str) else value.decode("latin-1")
                   for name, value in request.headers.items()}
        event = apigw_event(method, path, headers=headers, body=body, content_length=False)
        event["rawPath"] = url.path
        event["rawQueryString"] = url.query
        if query:
            event["queryStringParameters"] = query
        ensure_event_loop()
        result = handler(event, LambdaContext())
        return self.build_response(request, _raw_response(result))


def _raw_response(result: Mapping[str, Any]) -> HTTPResponse:
    import base64

    text = result.get("body") or ""
    content = (base64.b64decode(text) if result.get("isBase64Encoded")
               else text.encode())
    headers = HTTPHeaderDict()
    for name, value in (result.get("headers") or {}).items():
        headers.add(name, value)
    for cookie in result.get("cookies") or []:
        headers.add("set-cookie", cookie)
    status = int(result["statusCode"])
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return HTTPResponse(body=io.BytesIO(content), headers=headers, status=status, reason=reason,
                        version=11, preload_content=False, decode_content=False)


def mangum_session() -> requests.Session:
    from functions.checkpoint.app import handler as checkpoint
    from functions.execute.app import handler as execute
    from functions.logs.app import handler as logs
    from functions.stop.app import handler as stop
    from functions.transform.app import handler as transform_handler

    adapter = MangumAdapter({
        ("POST", "transform"): transform_handler, ("POST", "execute"): execute,
        ("POST", "action"): execute, ("POST", "checkpoint"): checkpoint,
        ("DELETE", "stop"): stop, ("GET", "logs"): logs, ("GET", "live"): logs,
    })
    session = requests.Session()
    session.mount(BASE_URL, adapter)
    return session


# --------------------------------------------------------------------------------------------
# The fuzzing user's own resources
# --------------------------------------------------------------------------------------------


@dataclass
class Owned:
    """Ids that belong to the fuzzing user, swapped into generated requests."""

    documents: list[str] = field(default_factory=list)
    executions: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    sops: list[str] = field(default_factory=list)
    step_ids: list[str] = field(default_factory=list)
    sop_bodies: list[dict[str, Any]] = field(default_factory=list)


def seed(api: Any, db: Any, user: Any) -> Owned:
    """Documents from the real fixtures, executions in every state, checkpoints, logs, SOPs."""
    from psycopg.types.json import Jsonb

    from aef.service import plan_step_ids
    from tests.integration.factories import (
        User,
        admin_connection,
        create_checkpoint,
        create_event,
        create_execution,
        create_log,
        set_runner_token,
    )

    owned = Owned()
    owner = User(id=user.id, email=f"{user.id[:8]}@example.com")
    for name in ("gmail-investor-crm-workflow.json", "investor-crm-sop-v0.8.json"):
        sop = fixture_sop(name)
        owned.sop_bodies.append(sop)
        created = transform(api, user, sop)
        owned.documents.append(created["aefDocumentId"])
        owned.executions.append(created["executionId"])
        owned.step_ids.extend(sorted(plan_step_ids(created["aefDocument"]))[:20])
    document = owned.documents[0]
    for status in ("queued", "running", "paused", "waiting_checkpoint", "waiting_recovery",
                   "cancelling", "failed", "completed", "cancelled"):
        execution_id = str(create_execution(db, owner, document_id=document,
                                            status=status)["id"])
        owned.executions.append(execution_id)
        set_runner_token(db, execution_id)
        if status in ("running", "paused", "waiting_checkpoint", "waiting_recovery"):
            with db.as_service() as conn:  # a live runner holds the lease
                conn.execute("update aef_executions set lease_expires_at = now() +"
                             " interval '1 hour' where id = %s", (execution_id,))
        for i, level in enumerate(("debug", "info", "warn", "error")):
            create_log(db, execution_id, f"{status} log {i}", level=level,
                       step_id=owned.step_ids[i], details={"n": i, "text": "é ✓"})
        create_event(db, execution_id, "execution_update", {"progress": 10})
        if status == "waiting_checkpoint":
            for step_id in owned.step_ids[:8]:
                owned.checkpoints.append(
                    str(create_checkpoint(db, execution_id, step_id)["id"]))
            with db.as_service() as conn:  # one that already expired
                row = conn.execute(
                    "insert into aef_checkpoints (execution_id, step_id, type, title,"
                    " default_action, timeout_seconds, expires_at) values (%s, %s, 'decision',"
                    " 'Expired?', 'reject', 30, now() - interval '1 minute') returning id",
                    (execution_id, owned.step_ids[8])).fetchone()
            owned.checkpoints.append(str(row["id"]))
    with db.as_service() as conn:  # a screenshot in the live snapshot (signed on read)
        conn.execute("update aef_executions set browser = %s where id = %s",
                     (Jsonb({"url": "https://example.test", "screenshotKey":
                             f"executions/{owned.executions[3]}/1.png"}),
                      owned.executions[3]))
    with admin_connection(db) as conn:  # the existing app's SOP table: valid and broken rows
        for data in (owned.sop_bodies[0], [1, 2, 3], {"unexpected": True}):
            job_id = str(uuid.uuid4())
            conn.execute("insert into sops (job_id, user_id, data) values (%s, %s, %s)",
                         (job_id, user.id, Jsonb(data)))
            owned.sops.append(job_id)
    return owned


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def own_or_random(data: st.DataObject, ids: list[str]) -> str | None:
    """Half of the time one of the user's own ids; None leaves the generated value."""
    if not ids or not data.draw(st.booleans(), label="own id"):
        return None
    return data.draw(st.sampled_from(ids), label="id")


def personalise(case: Any, data: st.DataObject, owned: Owned) -> None:
    """Swap the user's own ids (and real SOPs) into a generated case, in place."""
    params = case.path_parameters
    if "executionId" in params:
        real = own_or_random(data, owned.executions)
        if real is not None:
            case.path_parameters = {**params, "executionId": real}
    if "checkpointId" in params:
        real = own_or_random(data, owned.checkpoints)
        if real is not None:
            case.path_parameters = {**params, "checkpointId": real}
    if case.path.endswith("/logs/{executionId}") and isinstance(case.query, dict):
        step = own_or_random(data, owned.step_ids)
        if step is not None and "stepId" in case.query:
            case.query = {**case.query, "stepId": step}
    body = case.body
    if not isinstance(body, dict):
        return
    replaced = dict(body)
    if case.path == "/api/aef/transform":
        if "sop" in body and data.draw(st.booleans(), label="real sop"):
            replaced["sop"] = data.draw(st.sampled_from(owned.sop_bodies), label="sop")
        if "sopId" in body:
            replaced["sopId"] = own_or_random(data, owned.sops) or body["sopId"]
    if case.path == "/api/aef/execute":
        for key, ids in (("aefDocumentId", owned.documents), ("executionId", owned.executions)):
            if key in body:
                replaced[key] = own_or_random(data, ids) or body[key]
        if isinstance(body.get("stepIds"), list) and data.draw(st.booleans(), label="steps"):
            replaced["stepIds"] = data.draw(
                st.lists(st.sampled_from(owned.step_ids), min_size=1, max_size=3))
    if case.path.startswith("/api/aef/action/") and "stepId" in body:
        replaced["stepId"] = own_or_random(data, owned.step_ids) or body["stepId"]
    if replaced != body:
        case.body = replaced


@dataclass
class Outcome:
    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)


def fuzz_family(family: str, token: str, owned: Owned, examples: int) -> Outcome:
    schema = schemathesis.openapi.from_path(SPEC_PATH)
    strategies = []
    for method, path in FAMILIES[family]:
        operation = schema[path][method]
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        # two positive cases for each negative one: valid data reaches the use cases and the
        # user's own rows, invalid data still probes validation and the error model
        strategies.extend([positive, positive, negative])
    strategy = st.one_of(strategies)
    session = mangum_session()
    outcome = Outcome()
    auth = {"Authorization": f"Bearer {token}"}

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy, label="case")
        personalise(case, data, owned)
        label = f"{case.method} {case.path}"
        response = case.call(base_url=BASE_URL, session=session, headers=auth)
        outcome.calls[label] += 1
        outcome.statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (label, failure.title)
                outcome.failures.setdefault(key, _reproduction(case, response, failure))

    run()
    return outcome


def _reproduction(case: Any, response: Any, failure: Any) -> str:
    request = response.request
    body = request.body.decode(errors="replace") if isinstance(request.body, bytes) else (
        request.body)
    return json.dumps({
        "check": failure.title,
        "message": str(failure.message)[:800],
        "request": {"method": request.method, "url": request.url,
                    "authorized": "Authorization" in request.headers,
                    "headers": {k: v for k, v in request.headers.items()
                                if k.lower() != "authorization"},
                    "body": body[:1500] if body else None},
        "response": {"status": response.status_code,
                     "headers": {k: v[0] for k, v in response.headers.items()},
                     "body": response.content[:1500].decode(errors="replace")},
    }, indent=1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_schema_fuzzing(family: str, api: Any, db: Any, new_user: Any) -> None:
    """≥ REQUESTS_PER_FAMILY generated requests, zero 5xx, every response as documented."""
    user = new_user()
    owned = seed(api, db, user)
    big = 10**9
    # rate limits are the abuse tests' subject; here they would only turn requests into 429s.
    # The active cap stays low enough to be reached (the user already has 6 active runs).
    with settings_override(rate_limit_capacity=big, write_rate_limit_capacity=big,
                           read_rate_limit_capacity=big, rate_limit_refill_per_second=big,
                           write_rate_limit_refill_per_second=big,
                           read_rate_limit_refill_per_second=big, stop_ack_timeout_seconds=0.2,
                           max_active_executions=30):
        outcome = fuzz_family(family, user.token, owned, REQUESTS_PER_FAMILY)
    total = sum(outcome.calls.values())
    print(f"\n{family}: {total} requests; statuses {sorted(outcome.statuses.items())}")
    assert not outcome.failures, "\n".join(outcome.failures.values())
    assert total >= REQUESTS_PER_FAMILY, outcome.calls
    # every operation got a fair share, and the user's own ids reached the use cases (2xx)
    for method, path in FAMILIES[family]:
        label = f"{method} {path}"
        assert outcome.calls[label] >= REQUESTS_PER_FAMILY // 4, outcome.calls
        assert any(n for (op, status), n in outcome.statuses.items()
                   if op == label and status < 300), outcome.statuses
    assert not any(status >= 500 for _, status in outcome.statuses)
