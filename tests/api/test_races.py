"""Races: exactly-once answers, idempotent starts, the active cap, stops during waits."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.api.helpers import ScriptedRunner, run_inputs, transform

PARALLEL = 20


def parallel(n: int, call: Any) -> list[Any]:
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        # each Lambda sandbox has its own loop; Mangum expects one in the calling thread
        asyncio.set_event_loop(asyncio.new_event_loop())
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(go, range(n)))


def start(api: Any, user: Any, created: dict[str, Any], **extra: Any) -> Any:
    body = {"aefDocumentId": created["aefDocumentId"], **run_inputs(created), **extra}
    return api.call("POST", "/api/aef/execute", user.token, body)


def test_parallel_approvals_exactly_one_wins(api: Any, db: Any, new_user: Any) -> None:
    user = new_user()
    created = transform(api, user)
    execution_id = created["executionId"]
    assert start(api, user, created, executionId=execution_id).status == 202
    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    checkpoint_id = runner.ask_checkpoint("enter_email")

    replies = parallel(PARALLEL, lambda i: api.call(
        "POST", f"/api/aef/checkpoint/{checkpoint_id}", user.token,
        {"response": "approve" if i % 2 else "reject"}))
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] + [409] * (PARALLEL - 1)
    winner = next(r for r in replies if r.status == 200).body["decision"]
    for loser in (r for r in replies if r.status == 409):
        assert loser.body["code"] == "checkpoint_already_answered"
        assert loser.body["firstDecision"]["status"] == winner


def test_parallel_executes_with_one_idempotency_key(api: Any, db: Any, new_user: Any,
                                                     moto_ecs: Any, monkeypatch: Any) -> None:
    from aef.settings import get_settings

    # this test is about idempotency, not the bucket
    monkeypatch.setattr(get_settings(), "rate_limit_capacity", 100)
    user = new_user()
    created = transform(api, user)
    key = str(uuid.uuid4())
    replies = parallel(PARALLEL, lambda i: api.call(
        "POST", "/api/aef/execute", user.token,
        {"aefDocumentId": created["aefDocumentId"], **run_inputs(created)},
        headers={"Idempotency-Key": key}))
    assert {r.status for r in replies} == {202}, [r.body for r in replies if r.status != 202]
    assert len({r.body["executionId"] for r in replies}) == 1
    from tests.integration.factories import admin_connection

    with admin_connection(db) as conn:
        n = conn.execute("select count(*) as n from aef_executions where user_id = %s"
                         " and status <> 'idle'", (user.id,)).fetchone()["n"]
    assert n == 1
    other = api.call("POST", "/api/aef/execute", user.token,
                     {"aefDocumentId": created["aefDocumentId"], "stepIds": ["enter_email"]},
                     headers={"Idempotency-Key": key})
    assert other.status == 409 and other.body["code"] == "idempotency_key_reused"


def test_active_cap_holds_under_parallel_starts(api: Any, db: Any, new_user: Any) -> None:
    from aef.settings import get_settings

    cap = get_settings().max_active_executions
    user = new_user()
    created = transform(api, user)
    replies = parallel(10, lambda i: start(api, user, created))
    accepted = [r for r in replies if r.status == 202]
    refused = [r for r in replies if r.status == 409]
    assert len(accepted) == cap and len(refused) == 10 - cap
    assert {r.body["code"] for r in refused} == {"too_many_active"}
    # a second user is not affected by the first one's cap
    other = new_user()
    assert start(api, other, transform(api, other)).status == 202


def test_stop_during_checkpoint_wait_and_stop_twice(api: Any, db: Any, new_user: Any) -> None:
    user = new_user()
    created = transform(api, user)
    execution_id = created["executionId"]
    start(api, user, created, executionId=execution_id)
    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    runner.ask_checkpoint("enter_email")

    # the runner acknowledges the stop while the API waits for it
    def acknowledge() -> None:
        import time

        from tests.integration.factories import admin_connection

        for _ in range(50):
            with admin_connection(db) as conn:
                status = conn.execute("select status from aef_executions where id = %s",
                                      (execution_id,)).fetchone()["status"]
            if status == "cancelling":
                runner.acknowledge_stop()
                return
            time.sleep(0.05)

    helper = threading.Thread(target=acknowledge)
    helper.start()
    first, second = parallel(2, lambda i: api.call("DELETE", f"/api/aef/stop/{execution_id}",
                                                   user.token))
    helper.join()
    assert first.status == second.status == 200
    assert first.body == second.body == {"status": "stopped", "cleanup": "completed"}
    again = api.call("DELETE", f"/api/aef/stop/{execution_id}", user.token)
    assert again.body == first.body
    snap = api.call("GET", f"/api/aef/live/{execution_id}", user.token).body
    assert snap["message"]["execution"]["status"] == "cancelled"


def test_stop_without_acknowledgement_is_forced(api: Any, db: Any, new_user: Any,
                                                moto_ecs: Any) -> None:
    user = new_user()
    created = transform(api, user)
    execution_id = created["executionId"]
    start(api, user, created, executionId=execution_id)
    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    runner.ask_checkpoint("enter_email")
    reply = api.call("DELETE", f"/api/aef/stop/{execution_id}", user.token)
    assert reply.status == 200 and reply.body == {"status": "stopped", "cleanup": "forced"}
    stopped = moto_ecs.describe_tasks(cluster="aef", tasks=[_task_arn(db, execution_id)])
    task = stopped["tasks"][0]
    assert task["lastStatus"] == "STOPPED" or task.get("stoppedReason")
    again = api.call("DELETE", f"/api/aef/stop/{execution_id}", user.token)
    assert again.body == {"status": "stopped", "cleanup": "forced"}


def _task_arn(db: Any, execution_id: str) -> str:
    from tests.integration.factories import admin_connection

    with admin_connection(db) as conn:
        return conn.execute("select task_arn from aef_executions where id = %s",
                            (execution_id,)).fetchone()["task_arn"]


def test_stop_before_any_runner_claimed_is_immediate(api: Any, db: Any, new_user: Any) -> None:
    user = new_user()
    created = transform(api, user)
    execution_id = created["executionId"]
    assert start(api, user, created, executionId=execution_id).body["status"] == "queued"
    reply = api.call("DELETE", f"/api/aef/stop/{execution_id}", user.token)
    assert reply.status == 200 and reply.body == {"status": "stopped", "cleanup": "completed"}
    snap = api.call("GET", f"/api/aef/live/{execution_id}", user.token).body
    assert snap["message"]["execution"]["status"] == "cancelled"
    assert snap["message"]["type"] == "execution_complete"
