"""execute → running → checkpoint pending → approve → completed, checked at every step."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import ScriptedRunner, transform


def realtime_rows(db: Any, execution_id: str) -> list[dict[str, Any]]:
    from tests.integration.factories import broadcast_rows

    return broadcast_rows(db, execution_id)


def live(api: Any, user: Any, execution_id: str, after: int = 0) -> dict[str, Any]:
    reply = api.call("GET", f"/api/aef/live/{execution_id}", user.token,
                     query={"after": str(after)})
    assert reply.status == 200, reply.body
    return reply.body


def test_full_lifecycle(api: Any, db: Any, new_user: Any, moto_ecs: Any) -> None:
    user = new_user()
    created = transform(api, user)
    execution_id = created["executionId"]
    assert live(api, user, execution_id)["message"]["execution"]["status"] == "idle"

    reply = api.call("POST", "/api/aef/execute", user.token,
                     {"aefDocumentId": created["aefDocumentId"], "executionId": execution_id,
                      "secrets": {"gmail_email": "a@b.c", "gmail_password": "hunter2-secret",
                                  "airtable_api_key": "key-1", "airtable_base_id": "app1"}})
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "queued"
    assert reply.body["channel"] == f"execution:{execution_id}"
    assert reply.body["websocketUrl"].endswith("/realtime/v1/websocket")
    assert reply.body["pollUrl"] == f"/api/aef/live/{execution_id}"
    assert "ratelimit-remaining" in reply.headers
    tasks = moto_ecs.list_tasks(cluster="aef")["taskArns"]
    assert tasks, "the runner task was started through ECS"
    overrides = moto_ecs.describe_tasks(cluster="aef", tasks=tasks[-1:])["tasks"][0]["overrides"]
    env = {e["name"]: e["value"] for e in overrides["containerOverrides"][0]["environment"]}
    # the execution id only: no token for DescribeTasks or CloudTrail to show
    assert env == {"AEF_EXECUTION_ID": execution_id}

    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    snap = live(api, user, execution_id)
    assert snap["message"]["execution"]["status"] == "running"
    runner.run_step("navigate_to_gmail", 20)
    checkpoint_id = runner.ask_checkpoint("enter_email")

    snap = live(api, user, execution_id)
    assert snap["message"]["type"] == "checkpoint_required"
    assert [c["id"] for c in snap["message"]["checkpoints"]] == [checkpoint_id]
    rows = realtime_rows(db, execution_id)
    assert rows[-1]["event"] == "checkpoint_required" and rows[-1]["private"] is True
    assert rows[-1]["payload"]["checkpoints"][0]["id"] == checkpoint_id

    reply = api.call("POST", f"/api/aef/checkpoint/{checkpoint_id}", user.token,
                     {"response": "approve", "data": {"note": "looks right"}})
    assert reply.status == 200, reply.body
    assert reply.body == {"status": "success", "decision": "approved", "nextAction": "run_step"}
    again = api.call("POST", f"/api/aef/checkpoint/{checkpoint_id}", user.token,
                     {"response": "reject"})
    assert again.status == 409
    assert again.body["code"] == "checkpoint_already_answered"
    assert again.body["firstDecision"]["status"] == "approved"

    runner.resume_after_checkpoint()
    runner.run_step("enter_email", 100)
    runner.complete()

    snap = live(api, user, execution_id)
    assert snap["message"]["type"] == "execution_complete"
    assert snap["message"]["execution"] == {"id": execution_id, "status": "completed",
                                            "currentStep": "enter_email", "progress": 100}
    seqs = [e["seq"] for e in snap["events"]]
    assert seqs == list(range(1, snap["lastSeq"] + 1)), "every event, gapless, in order"
    rows = realtime_rows(db, execution_id)
    assert [r["payload"]["seq"] for r in rows] == seqs
    assert [r["payload"] for r in rows] == snap["events"]
    assert [r["event"] for r in rows][-1] == "execution_complete"
    # the body is spliced from the stored events' JSON text: still a LiveResponse
    from aef.api_models import LiveResponse

    assert LiveResponse.model_validate(snap).last_seq == snap["lastSeq"]

    # polling catch-up and the ETag
    tail = live(api, user, execution_id, after=seqs[-3])
    assert [e["seq"] for e in tail["events"]] == seqs[-2:]
    first = api.call("GET", f"/api/aef/live/{execution_id}", user.token)
    unchanged = api.call("GET", f"/api/aef/live/{execution_id}", user.token,
                         headers={"if-none-match": first.headers["etag"]})
    assert unchanged.status == 304

    logs = api.call("GET", f"/api/aef/logs/{execution_id}", user.token, query={"limit": "2"})
    assert logs.status == 200
    assert len(logs.body["logs"]) == 2 and logs.body["nextCursor"]
    rest = api.call("GET", f"/api/aef/logs/{execution_id}", user.token,
                    query={"after": logs.body["nextCursor"], "limit": "100"})
    ids = [entry["id"] for entry in logs.body["logs"] + rest.body["logs"]]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    messages = " ".join(e["message"] for e in logs.body["logs"] + rest.body["logs"])
    assert "enter_email done" in messages and "hunter2-secret" not in messages

    # secrets are gone once the execution ended
    from tests.integration.factories import admin_connection

    with admin_connection(db) as conn:
        left = conn.execute("select count(*) as n from aef_execution_secrets"
                            " where execution_id = %s", (execution_id,)).fetchone()
    assert left["n"] == 0


# CI runs this module on Postgres 15 and 17 (scripts/test.sh)
pytestmark = pytest.mark.supabase
