"""Every endpoint called with user B's ids under user A's token → 404, nothing changes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import ScriptedRunner, run_inputs, transform


def snapshot(db: Any, user_id: str) -> dict[str, Any]:
    from tests.integration.factories import admin_connection

    tables = ["aef_documents", "aef_executions", "aef_execution_steps", "aef_checkpoints",
              "aef_logs", "aef_events", "aef_commands", "aef_execution_secrets"]
    with admin_connection(db) as conn:
        return {t: conn.execute(f"select * from {t} where user_id = %s order by 1, 2",
                                (user_id,)).fetchall() for t in tables}


@pytest.fixture
def victim(api: Any, db: Any, new_user: Any) -> dict[str, Any]:
    b = new_user()
    created = transform(api, b)
    execution_id = created["executionId"]
    reply = api.call("POST", "/api/aef/execute", b.token,
                     {"aefDocumentId": created["aefDocumentId"], "executionId": execution_id,
                      **run_inputs(created)})
    assert reply.status == 202
    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    checkpoint_id = runner.ask_checkpoint("enter_email")
    return {"user": b, "doc": created["aefDocumentId"], "exec": execution_id,
            "checkpoint": checkpoint_id}


def test_every_endpoint_hides_other_users_resources(api: Any, db: Any, new_user: Any,
                                                    victim: dict[str, Any]) -> None:
    a = new_user()
    before = snapshot(db, victim["user"].id)
    e, c, d = victim["exec"], victim["checkpoint"], victim["doc"]
    calls = [
        ("POST", "/api/aef/execute", {"aefDocumentId": d}),
        ("POST", "/api/aef/execute", {"aefDocumentId": d, "executionId": e}),
        ("POST", f"/api/aef/action/{e}", {"action": "pause"}),
        ("POST", f"/api/aef/action/{e}", {"action": "execute", "stepId": "enter_email"}),
        ("POST", f"/api/aef/checkpoint/{c}", {"response": "approve"}),
        ("DELETE", f"/api/aef/stop/{e}", None),
        ("GET", f"/api/aef/logs/{e}", None),
        ("GET", f"/api/aef/live/{e}", None),
    ]
    for method, path, body in calls:
        reply = api.call(method, path, a.token, body)
        assert reply.status == 404, (method, path, reply.status, reply.body)
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert reply.body["code"].endswith("not_found")
    # transform by another user's sopId
    from tests.integration.factories import admin_connection

    with admin_connection(db) as conn:
        job = conn.execute("insert into sops (job_id, user_id, data) values"
                           " (gen_random_uuid(), %s, '{}'::jsonb) returning job_id",
                           (victim["user"].id,)).fetchone()["job_id"]
    reply = api.call("POST", "/api/aef/transform", a.token, {"sopId": str(job)})
    assert reply.status == 404 and reply.body["code"] == "sop_not_found"
    assert snapshot(db, victim["user"].id) == before


def test_owner_reads_stored_document_only(api: Any, db: Any, new_user: Any) -> None:
    owner, other = new_user(), new_user()
    created = transform(api, owner)
    for user, expected in ((owner, 1), (other, 0)):
        with db.as_authenticated(user.claims) as conn:
            rows = conn.execute("select id from aef_documents where id = %s",
                                (created["aefDocumentId"],)).fetchall()
        assert len(rows) == expected


def test_transform_from_stored_sop(api: Any, db: Any, new_user: Any) -> None:
    from tests.api.helpers import fixture_sop
    from tests.integration.factories import admin_connection

    user = new_user()
    sop = fixture_sop("investor-crm-sop-v0.8.json")
    with admin_connection(db) as conn:
        from psycopg.types.json import Jsonb

        job = conn.execute("insert into sops (job_id, user_id, data) values"
                           " (gen_random_uuid(), %s, %s) returning job_id",
                           (user.id, Jsonb(sop))).fetchone()["job_id"]
    reply = api.call("POST", "/api/aef/transform", user.token, {"sopId": str(job)})
    assert reply.status == 201, reply.body
    assert reply.body["estimatedStepCount"] > 0
    with admin_connection(db) as conn:
        stored = conn.execute("select data from sops where job_id = %s", (job,)).fetchone()
    assert stored["data"] == sop, "sops.data is never rewritten"
