"""The sweeper (lost runners, expired checkpoints) and how actions reach a runner."""

from __future__ import annotations

import select
from typing import Any

import psycopg

from runner.control import wake_channel
from tests.api.helpers import ScriptedRunner, run_inputs, transform
from tests.integration.factories import admin_connection


def started(api: Any, db: Any, user: Any) -> tuple[str, ScriptedRunner]:
    created = transform(api, user)
    execution_id = created["executionId"]
    reply = api.call("POST", "/api/aef/execute", user.token,
                     {"aefDocumentId": created["aefDocumentId"], "executionId": execution_id,
                      **run_inputs(created)})
    assert reply.status == 202
    runner = ScriptedRunner(db, execution_id)
    runner.claim()
    return execution_id, runner


def expire_lease(db: Any, execution_id: str) -> None:
    with admin_connection(db) as conn:
        conn.execute("update aef_executions set lease_expires_at = now() - interval '1 second'"
                      " where id = %s", (execution_id,))


def test_sweeper_fails_lost_runner_with_resume(api: Any, db: Any, new_user: Any) -> None:
    from aef import service

    user = new_user()
    execution_id, runner = started(api, db, user)
    runner.run_step("navigate_to_gmail", 10)
    with runner.tx() as conn:  # the runner dies in the middle of the next step
        conn.execute("insert into aef_execution_steps (execution_id, step_id, status)"
                     " values (%s, 'enter_email', 'running')", (execution_id,))
    expire_lease(db, execution_id)
    result = service.sweep(db=db)
    assert result["runnersLost"] >= 1

    snap = api.call("GET", f"/api/aef/live/{execution_id}", user.token).body["message"]
    assert snap["type"] == "error" and snap["execution"]["status"] == "failed"
    assert {o["action"] for o in snap["error"]["recovery_options"]} >= {"resume", "stop"}
    assert "navigate_to_gmail" in snap["error"]["message"]
    with admin_connection(db) as conn:
        step = conn.execute("select status from aef_execution_steps where execution_id = %s"
                            " and step_id = 'enter_email'", (execution_id,)).fetchone()
    assert step["status"] == "failed"

    # resume: a new runner is launched for the same execution
    reply = api.call("POST", f"/api/aef/action/{execution_id}", user.token, {"action": "resume"})
    assert reply.status == 200 and reply.body["delivered"] == "launched"
    assert reply.body["status"] == "queued"
    assert service.sweep(db=db)["runnersLost"] == 0, "a queued execution is not swept as lost"


def test_sweeper_expires_checkpoints_and_wakes_runner(api: Any, db: Any, new_user: Any) -> None:
    from aef import service

    user = new_user()
    _, runner = started(api, db, user)
    checkpoint_id = runner.ask_checkpoint("enter_email", timeout=1, overdue=True)
    listener = psycopg.connect(db.admin_url, autocommit=True)
    listener.execute(f"listen {wake_channel(runner.token)}")
    try:
        assert service.sweep(db=db)["checkpointsExpired"] == 1
        ready = select.select([listener.fileno()], [], [], 5)[0]
        assert ready, "the waiting runner is woken"
        assert [n.payload for n in listener.notifies(timeout=0.5, stop_after=1)] == [""]
    finally:
        listener.close()
    late = api.call("POST", f"/api/aef/checkpoint/{checkpoint_id}", user.token,
                    {"response": "approve"})
    assert late.status == 409 and late.body["code"] == "checkpoint_already_answered"
    assert late.body["firstDecision"]["status"] == "expired"


def test_expired_but_unswept_checkpoint_is_refused(api: Any, db: Any, new_user: Any) -> None:
    user = new_user()
    _, runner = started(api, db, user)
    checkpoint_id = runner.ask_checkpoint("enter_email", timeout=1, overdue=True)
    reply = api.call("POST", f"/api/aef/checkpoint/{checkpoint_id}", user.token,
                     {"response": "approve"})
    assert reply.status == 409 and reply.body["code"] == "checkpoint_expired"


def test_action_reaches_live_runner_as_command(api: Any, db: Any, new_user: Any) -> None:
    user = new_user()
    execution_id, runner = started(api, db, user)
    listener = psycopg.connect(db.admin_url, autocommit=True)
    listener.execute(f"listen {wake_channel(runner.token)}")
    try:
        reply = api.call("POST", f"/api/aef/action/{execution_id}", user.token,
                         {"action": "pause"})
        assert reply.status == 200 and reply.body["delivered"] == "runner"
        notes = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    finally:
        listener.close()
    assert notes == [""], "woken; the command itself is read from its row"
    with admin_connection(db) as conn:
        cmd = conn.execute("select command, status from aef_commands where execution_id = %s",
                           (execution_id,)).fetchone()
    assert cmd == {"command": "pause", "status": "pending"}


def test_execute_single_step_without_runner_launches_one(api: Any, db: Any, new_user: Any,
                                                        moto_ecs: Any) -> None:
    user = new_user()
    created = transform(api, user)
    execution_id = created["executionId"]
    before = len(moto_ecs.list_tasks(cluster="aef")["taskArns"])
    reply = api.call("POST", f"/api/aef/action/{execution_id}", user.token,
                     {"action": "execute", "stepId": "navigate_to_gmail"})
    assert reply.status == 200, reply.body
    assert reply.body == {"executionId": execution_id, "status": "queued", "action": "execute",
                          "delivered": "launched"}
    assert len(moto_ecs.list_tasks(cluster="aef")["taskArns"]) == before + 1
    with admin_connection(db) as conn:
        row = conn.execute("select status, step_ids from aef_executions where id = %s",
                           (execution_id,)).fetchone()
    assert row == {"status": "queued", "step_ids": ["navigate_to_gmail"]}
    # pausing needs a live runner; a queued one counts (it reads pending commands on start)
    paused = api.call("POST", f"/api/aef/action/{execution_id}", user.token, {"action": "pause"})
    assert paused.status == 409 and paused.body["code"] == "invalid_state"


def test_a_paused_execution_whose_runner_let_go_is_resumed_by_a_new_runner(
        api: Any, db: Any, new_user: Any) -> None:
    """Nobody answered a checkpoint (timeout action pause): the runner paused, then released
    the browser and its lease. The sweeper leaves it alone; resume launches a new runner."""
    from aef import service

    user = new_user()
    execution_id, runner = started(api, db, user)
    runner.run_step("navigate_to_gmail", 10)
    runner.ask_checkpoint("enter_email")
    with runner.tx() as conn:  # what runner/engine.py writes when the grace period ends
        conn.execute("update aef_checkpoints set status = 'expired' where execution_id = %s",
                     (execution_id,))
        conn.execute("update aef_executions set status = 'paused' where id = %s",
                     (execution_id,))
        conn.execute("update aef_executions set lease_expires_at = null where id = %s",
                     (execution_id,))
    assert service.sweep(db=db)["runnersLost"] == 0  # not lost: paused on purpose

    reply = api.call("POST", f"/api/aef/action/{execution_id}", user.token, {"action": "pause"})
    assert reply.status == 409  # only resume (or stop) applies
    reply = api.call("POST", f"/api/aef/action/{execution_id}", user.token, {"action": "resume"})
    assert reply.status == 200, reply.body
    assert reply.body["delivered"] == "launched" and reply.body["status"] == "queued"
