"""The runner's SQL under role aef_runner: claim, lease, steps, logs, events, checkpoints."""

from __future__ import annotations

import pytest

from aef.db import Database
from aef.errors import Conflict
from aef.store import runner as runner_store
from tests.runner.helpers import (
    answer_checkpoint,
    events,
    execution_row,
    logs,
    make_execution,
    request_stop,
    send_command,
    step_rows,
    task,
)

PLAN = [task("s1", [{"type": "navigate", "url": "http://127.0.0.1/"}])]


def test_claim_is_exclusive_and_needs_the_token(db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, "wrong-token") as conn:
        assert runner_store.claim(conn, execution.id, "r1", 30) is None
        assert runner_store.claim_blocker(conn, execution.id) is None  # invisible without the token
    with db.as_runner(execution.id, execution.token) as conn:
        row = runner_store.claim(conn, execution.id, "r1", 30)
    assert row is not None and row["status"] == "starting" and row["runner_id"] == "r1"
    with db.as_runner(execution.id, execution.token) as conn:
        assert runner_store.claim(conn, execution.id, "r2", 30) is None
        blocker = runner_store.claim_blocker(conn, execution.id)
    assert blocker is not None and blocker["status"] == "starting" and blocker["lease_live"]


def test_heartbeat_extends_the_lease_and_reports_cancelling(db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, execution.token) as conn:
        runner_store.claim(conn, execution.id, "r1", 5)
    before = execution_row(db, execution)["lease_expires_at"]
    with db.as_runner(execution.id, execution.token) as conn:
        assert runner_store.heartbeat(conn, execution.id, "r1", 60) == "starting"
        assert runner_store.heartbeat(conn, execution.id, "someone-else", 60) is None
    assert execution_row(db, execution)["lease_expires_at"] > before
    with db.as_user(execution.user.claims) as conn:
        conn.execute("update aef_executions set status = 'cancelling' where id = %s",
                     (execution.id,))
    with db.as_runner(execution.id, execution.token) as conn:
        assert runner_store.heartbeat(conn, execution.id, "r1", 60) == "cancelling"


def test_a_step_finished_after_a_stop_request_is_recorded_and_the_stop_stands(
        db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, execution.token) as conn:
        runner_store.claim(conn, execution.id, "r1", 30)
        runner_store.update_execution(conn, execution.id, status="running")
        runner_store.upsert_step(conn, execution.id, "s1", 0, "running", label="s1",
                                 new_attempt=True)
    request_stop(db, execution)  # DELETE /stop while the step's action runs
    with db.as_runner(execution.id, execution.token) as conn:
        runner_store.upsert_step(conn, execution.id, "s1", 0, "completed")
        row = runner_store.update_execution(conn, execution.id, status="running", progress=50)
    assert row is not None and row["status"] == "cancelling" and row["progress"] == 50
    assert step_rows(db, execution)[("s1", 0)]["status"] == "completed"
    with pytest.raises(Conflict), db.as_runner(execution.id, execution.token) as conn:
        runner_store.update_execution(conn, execution.id, status="paused")  # still guarded


def test_state_change_logs_and_event_in_one_transaction(db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, execution.token) as conn:
        runner_store.claim(conn, execution.id, "r1", 30)
        entries = runner_store.insert_logs(conn, execution.id, [
            runner_store.LogRecord("info", "execution", "first"),
            runner_store.LogRecord("warn", "action", "second", "s1", {"k": 1}),
        ])
        runner_store.upsert_step(conn, execution.id, "s1", 0, "running", label="Step one",
                                 new_attempt=True)
        runner_store.update_execution(conn, execution.id, status="running", current_step_id="s1",
                                      progress=10, browser={"isReady": True})
        seq = runner_store.insert_event(conn, execution.id, "execution_update", logs=entries)
    assert [e["message"] for e in entries] == ["first", "second"]
    assert entries[1]["stepId"] == "s1" and entries[1]["details"] == {"k": 1}
    message = events(db, execution)[-1]["message"]
    assert message["seq"] == seq
    assert message["execution"]["status"] == "running"
    assert message["execution"]["currentStep"] == "s1"
    assert message["browser"]["isReady"] is True
    assert [entry["message"] for entry in message["logs"]] == ["first", "second"]
    row = step_rows(db, execution)[("s1", 0)]
    assert row["status"] == "running" and row["attempts"] == 1 and row["label"] == "Step one"


def test_a_failed_write_rolls_back_its_logs_and_event(db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, execution.token) as conn:
        runner_store.claim(conn, execution.id, "r1", 30)
    with pytest.raises(Conflict), db.as_runner(execution.id, execution.token) as conn:
        runner_store.insert_logs(conn, execution.id, [runner_store.LogRecord("info", "x", "lost")])
        # starting -> completed
        runner_store.update_execution(conn, execution.id, status="completed")
    assert logs(db, execution) == []
    assert events(db, execution) == []


def test_step_transitions_are_guarded(db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, execution.token) as conn:
        runner_store.upsert_step(conn, execution.id, "s1", 0, "running", new_attempt=True)
        runner_store.upsert_step(conn, execution.id, "s1", 0, "failed", error="boom")
        runner_store.upsert_step(conn, execution.id, "s1", 0, "running", new_attempt=True)
        runner_store.upsert_step(conn, execution.id, "s1", 0, "completed", result={"ok": True})
    row = step_rows(db, execution)[("s1", 0)]
    assert row["attempts"] == 2 and row["error"] is None and row["result"] == {"ok": True}
    assert row["finished_at"] is not None
    with pytest.raises(Conflict), db.as_runner(execution.id, execution.token) as conn:
        runner_store.upsert_step(conn, execution.id, "s1", 0, "running")


def test_checkpoint_expiry_and_reuse(db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, execution.token) as conn:
        first = runner_store.insert_checkpoint(conn, execution.id, "s1", 0, "before_step", "Go?",
                                               None, "skip", 1)
        again = runner_store.insert_checkpoint(conn, execution.id, "s1", 0, "before_step", "Go?",
                                               None, "skip", 1)
        assert again["id"] == first["id"]
        assert runner_store.expire_checkpoint(conn, str(first["id"])) is None  # not due yet
        conn.execute("select pg_sleep(1.1)")
    with db.as_runner(execution.id, execution.token) as conn:
        expired = runner_store.expire_checkpoint(conn, str(first["id"]))
    assert expired is not None and expired["status"] == "expired"
    assert expired["response"]["defaultAction"] == "skip"


def test_commands_are_handled_once(db: Database) -> None:
    execution = make_execution(db, PLAN)
    send_command(db, execution, "pause")
    send_command(db, execution, "resume")
    with db.as_runner(execution.id, execution.token) as conn:
        pending = runner_store.pending_commands(conn, execution.id)
        assert [c["command"] for c in pending] == ["pause", "resume"]
        assert runner_store.poll(conn, execution.id)["last_command"] == pending[-1]["id"]
        runner_store.finish_command(conn, pending[0]["id"], "done")
        runner_store.finish_command(conn, pending[1]["id"], "rejected")
        runner_store.finish_command(conn, pending[1]["id"], "done")  # no second handling
        assert runner_store.pending_commands(conn, execution.id) == []
    with db.as_service() as conn:
        statuses = [r["status"] for r in conn.execute(
            "select status from aef_commands where execution_id = %s order by id",
            (execution.id,)).fetchall()]
    assert statuses == ["done", "rejected"]


def test_answered_checkpoint_is_read_back(db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, execution.token) as conn:
        checkpoint = runner_store.insert_checkpoint(conn, execution.id, "s1", 0, "before_step",
                                                    "Go?", "desc", "reject", 60)
    answer_checkpoint(db, execution, "approved")
    with db.as_runner(execution.id, execution.token) as conn:
        row = runner_store.get_checkpoint(conn, str(checkpoint["id"]))
    assert row is not None and row["status"] == "approved" and not row["is_expired"]


def test_cached_locator_comes_from_the_latest_completed_run(db: Database) -> None:
    execution = make_execution(db, PLAN)
    with db.as_runner(execution.id, execution.token) as conn:
        runner_store.upsert_step(conn, execution.id, "s1", 1, "running", new_attempt=True)
        runner_store.upsert_step(conn, execution.id, "s1", 1, "completed",
                                 locator={"actions": {"0": {"strategy": "css"}}})
        runner_store.upsert_step(conn, execution.id, "s1", 2, "running", new_attempt=True)
        assert runner_store.cached_locator(conn, execution.id, "s1") == {
            "actions": {"0": {"strategy": "css"}}}
        assert runner_store.cached_locator(conn, execution.id, "other") is None
