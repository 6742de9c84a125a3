"""Inputs: the transform lists what a plan needs; a run that lacks one is refused before anything
is queued (POST /execute and the actions that start a run), naming every missing name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.api.helpers import ScriptedRunner, transform
from tests.integration.factories import admin_connection

DEMO = Path(__file__).resolve().parents[2] / "local" / "demo" / "workflows"
SECRET_VALUE = "correct-horse-battery-staple"


def demo_workflow() -> dict[str, Any]:
    return json.loads((DEMO / "investor-crm-demo.json").read_text())


def execute(api: Any, user: Any, created: dict[str, Any], **body: Any) -> Any:
    return api.call("POST", "/api/aef/execute", user.token,
                    {"aefDocumentId": created["aefDocumentId"], **body})


def missing(reply: Any) -> dict[str, str]:
    assert reply.status == 422, reply.body
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.body["code"] == "missing_inputs"
    return {m["name"]: m["kind"] for m in reply.body["missing"]}


def statuses(db: Any, user_id: str) -> list[str]:
    with admin_connection(db) as conn:
        return [r["status"] for r in conn.execute(
            "select status from aef_executions where user_id = %s", (user_id,))]


def test_transform_lists_the_inputs_and_stores_them(api: Any, db: Any, new_user: Any) -> None:
    user = new_user()
    created = transform(api, user, demo_workflow())
    listed = {i["name"]: i for i in created["inputs"]}
    assert {n: i["kind"] for n, i in listed.items()} == {
        "base_url": "variable", "demo_email": "credential", "demo_password": "credential"}
    assert "open_login_page" in listed["base_url"]["requiredBy"]
    assert listed["base_url"]["description"]
    assert created["aefDocument"]["aef"]["inputs"] == created["inputs"]
    with admin_connection(db) as conn:
        stored = conn.execute("select document from aef_documents where id = %s",
                              (created["aefDocumentId"],)).fetchone()["document"]
    assert stored["aef"]["inputs"] == created["inputs"]


def test_execute_without_inputs_names_every_missing_one(api: Any, db: Any,
                                                        new_user: Any) -> None:
    user = new_user()
    created = transform(api, user, demo_workflow())
    reply = execute(api, user, created, executionId=created["executionId"],
                    secrets={"demo_password": SECRET_VALUE})
    assert missing(reply) == {"base_url": "variable", "demo_email": "credential"}
    assert SECRET_VALUE not in json.dumps(reply.body)
    assert statuses(db, user.id) == ["idle"], "nothing was queued"
    reply = execute(api, user, created)  # a new execution: refused before it is created
    assert missing(reply) == {"base_url": "variable", "demo_email": "credential",
                              "demo_password": "credential"}
    assert statuses(db, user.id) == ["idle"]


def test_execute_with_every_input_is_accepted_and_unused_names_warned(
        api: Any, db: Any, new_user: Any, moto_ecs: Any) -> None:
    user = new_user()
    created = transform(api, user, demo_workflow())
    reply = execute(api, user, created, executionId=created["executionId"],
                    variables={"base_url": "https://demo.example.test", "colour": "blue"},
                    secrets={"demo_email": "a@b.c", "demo_password": SECRET_VALUE,
                             "api_token": "unused"})
    assert reply.status == 202, reply.body
    assert reply.body["warnings"] == ["secret 'api_token' is not used by this document",
                                      "variable 'colour' is not used by this document"]
    assert statuses(db, user.id) == ["queued"]


def test_a_step_subset_needs_only_its_own_inputs(api: Any, db: Any, new_user: Any,
                                                  moto_ecs: Any) -> None:
    user = new_user()
    created = transform(api, user, demo_workflow())
    assert missing(execute(api, user, created, stepIds=["enter_email"])) == {
        "demo_email": "credential"}
    reply = execute(api, user, created, stepIds=["enter_email"], secrets={"demo_email": "a@b.c"})
    assert reply.status == 202, reply.body
    # a step inside the loop reads the loop's item, which only the (unselected) loop sets
    assert missing(execute(api, user, created, stepIds=["open_email"],
                           variables={"base_url": "https://demo.example.test"})) == {
        "email_id": "variable"}
    reply = execute(api, user, created, stepIds=["open_email"],
                    variables={"base_url": "https://demo.example.test", "email_id": "7"})
    assert reply.status == 202, reply.body
    # a selected container brings its body: the login's first step opens {{base_url}}
    assert missing(execute(api, user, created, stepIds=["demo_login_flow"])) == {
        "demo_email": "credential", "demo_password": "credential", "base_url": "variable"}


def test_actions_that_start_a_run_check_the_inputs_too(api: Any, db: Any, new_user: Any,
                                                        moto_ecs: Any) -> None:
    user = new_user()
    created = transform(api, user, demo_workflow())
    execution_id = created["executionId"]
    reply = api.call("POST", f"/api/aef/action/{execution_id}", user.token,
                     {"action": "execute", "stepId": "enter_password"})
    assert missing(reply) == {"demo_password": "credential"}
    assert statuses(db, user.id) == ["idle"]
    # started once with its inputs, failed: a retry finds them still held (names only)
    assert execute(api, user, created, executionId=execution_id,
                   variables={"base_url": "https://demo.example.test"},
                   secrets={"demo_email": "a@b.c", "demo_password": SECRET_VALUE}).status == 202
    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    with runner.tx() as conn:
        conn.execute("update aef_executions set status = 'failed' where id = %s",
                     (execution_id,))
    with admin_connection(db) as conn:  # as if the password had never been given
        conn.execute("update aef_execution_secrets set names = array['demo_email']"
                     " where execution_id = %s", (execution_id,))
    reply = api.call("POST", f"/api/aef/action/{execution_id}", user.token, {"action": "retry"})
    assert missing(reply) == {"demo_password": "credential"}
    with admin_connection(db) as conn:
        conn.execute("update aef_execution_secrets set names = array['demo_email',"
                     " 'demo_password'] where execution_id = %s", (execution_id,))
    reply = api.call("POST", f"/api/aef/action/{execution_id}", user.token, {"action": "retry"})
    assert reply.status == 200, reply.body
    assert reply.body["delivered"] == "launched"


def test_documents_without_inputs_start_as_before(api: Any, new_user: Any,
                                                  moto_ecs: Any) -> None:
    user = new_user()
    sop = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "sops"
                      / "investor-crm-sop-v0.8.json").read_text())
    created = transform(api, user, sop)
    assert created["inputs"] == []
    reply = execute(api, user, created)
    assert reply.status == 202 and reply.body["warnings"] == [], reply.body
