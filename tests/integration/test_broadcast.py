"""The outbox: every event row is numbered gaplessly and broadcast through Realtime.

A trigger on aef_events takes the next seq under the execution's row lock, composes the live
message and calls realtime.send(message, type, 'execution:<id>', true) in the same transaction,
so the broadcast exists exactly when the event does. The runner's wake-ups (an empty NOTIFY
on a channel derived from the runner token, runner.control.wake_channel) are checked here too.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from aef.db import Database
from runner.control import wake_channel
from tests.integration.factories import (
    User,
    admin_connection,
    broadcast_rows,
    create_checkpoint,
    create_command,
    create_document,
    create_event,
    create_execution,
    create_user,
)

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def owner(db: Database) -> User:
    return create_user(db)


@pytest.fixture(scope="module")
def document_id(db: Database, owner: User) -> Any:
    return create_document(db, owner)["id"]


def new_execution(db: Database, owner: User, document_id: Any,
                  status: str = "running") -> str:
    return str(create_execution(db, owner, document_id=document_id, status=status)["id"])


def broadcasts(db: Database, execution_id: str) -> list[dict[str, Any]]:
    return broadcast_rows(db, execution_id, "topic, extension, event, private, payload")


def event_seqs(db: Database, execution_id: str) -> list[int]:
    with db.as_service() as conn:
        rows = conn.execute("select seq from aef_events where execution_id = %s order by seq",
                            (execution_id,)).fetchall()
    return [r["seq"] for r in rows]


def test_one_event_one_private_broadcast(db: Database, owner: User, document_id: Any) -> None:
    execution_id = new_execution(db, owner, document_id)
    event = create_event(db, execution_id, "execution_update")
    sent = broadcasts(db, execution_id)
    assert len(sent) == 1
    message = sent[0]
    assert message["topic"] == f"execution:{execution_id}"
    assert message["extension"] == "broadcast"
    assert message["event"] == "execution_update"
    assert message["private"] is True
    assert message["payload"] == event["message"]


def test_payload_is_the_live_message(db: Database, owner: User, document_id: Any) -> None:
    execution_id = new_execution(db, owner, document_id)
    with db.as_service() as conn:
        conn.execute(
            "update aef_executions set current_step_id = 'open-inbox', progress = 40, "
            "browser = %s where id = %s",
            (Jsonb({"screenshot": "https://s3.example/shot.png?sig=1",
                    "currentUrl": "http://127.0.0.1:8000/inbox", "isReady": True,
                    "lastAction": "click #compose"}), execution_id))
    checkpoint = create_checkpoint(db, execution_id, "open-inbox", title="Send it?")
    log = {"id": "1", "level": "info", "message": "clicked"}
    create_event(db, execution_id, "checkpoint_required", {"logs": [log]})

    payload = broadcasts(db, execution_id)[0]["payload"]
    assert set(payload) == {"type", "timestamp", "seq", "execution", "browser", "logs",
                            "checkpoints"}
    assert payload["type"] == "checkpoint_required"
    assert ISO_UTC.match(payload["timestamp"])
    assert payload["seq"] == 1
    assert payload["execution"] == {"id": execution_id, "status": "running",
                                    "currentStep": "open-inbox", "progress": 40}
    assert payload["browser"] == {"screenshot": "https://s3.example/shot.png?sig=1",
                                  "currentUrl": "http://127.0.0.1:8000/inbox",
                                  "isReady": True, "lastAction": "click #compose"}
    assert payload["logs"] == [log]
    [pending] = payload["checkpoints"]
    assert pending["id"] == str(checkpoint["id"])
    assert pending["stepId"] == "open-inbox" and pending["status"] == "pending"
    assert pending["title"] == "Send it?" and pending["timeoutSeconds"] == 300
    assert ISO_UTC.match(pending["expiresAt"])


def test_error_event_carries_the_error(db: Database, owner: User, document_id: Any) -> None:
    execution_id = new_execution(db, owner, document_id)
    error = {"message": "Selector not found", "recovery_options": [{"action": "retry"}],
             "auto_retry_in": 30}
    create_event(db, execution_id, "error", {"error": error})
    payload = broadcasts(db, execution_id)[0]["payload"]
    assert payload["error"] == error
    assert payload["browser"] == {"screenshot": "", "currentUrl": "", "isReady": False}
    assert payload["logs"] == [] and payload["checkpoints"] == []


def test_rolled_back_event_broadcasts_nothing(db: Database, owner: User,
                                              document_id: Any) -> None:
    execution_id = new_execution(db, owner, document_id)
    with db.as_service() as conn:
        conn.execute("insert into aef_events (execution_id, type, message) "
                     "values (%s, 'execution_update', '{}')", (execution_id,))
        raise psycopg.Rollback()
    assert broadcasts(db, execution_id) == []
    assert event_seqs(db, execution_id) == []
    # the seq it would have taken is not burnt either
    create_event(db, execution_id)
    assert event_seqs(db, execution_id) == [1]


def test_seq_is_gapless_under_concurrency(db: Database, owner: User, document_id: Any) -> None:
    execution_id = new_execution(db, owner, document_id)
    writers, per_writer = 8, 25
    pool = Database(db.url, min_size=writers, max_size=writers)
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            start.wait(10)
            for _ in range(per_writer):
                with pool.as_service() as conn:
                    conn.execute("insert into aef_events (execution_id, type, message) "
                                 "values (%s, 'execution_update', '{}')", (execution_id,))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    try:
        threads = [threading.Thread(target=write) for _ in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        pool.close()
    assert failures == []
    total = writers * per_writer
    assert event_seqs(db, execution_id) == list(range(1, total + 1))
    sent = broadcasts(db, execution_id)
    assert [m["payload"]["seq"] for m in sent] == list(range(1, total + 1))
    with db.as_service() as conn:
        last = conn.execute("select last_seq from aef_executions where id = %s",
                            (execution_id,)).fetchone()
    assert last == {"last_seq": total}


def test_seq_is_per_execution(db: Database, owner: User, document_id: Any) -> None:
    first, second = new_execution(db, owner, document_id), new_execution(db, owner, document_id)
    for execution_id in [first, second, first, first, second]:
        create_event(db, execution_id)
    assert event_seqs(db, first) == [1, 2, 3]
    assert event_seqs(db, second) == [1, 2]
    assert [m["payload"]["seq"] for m in broadcasts(db, second)] == [1, 2]


def test_event_for_unknown_execution_is_refused(db: Database) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        create_event(db, "00000000-0000-4000-8000-000000000000")


def test_event_owner_comes_from_the_execution(db: Database, owner: User,
                                              document_id: Any) -> None:
    execution_id = new_execution(db, owner, document_id)
    intruder = create_user(db)
    with db.as_service() as conn:
        row = conn.execute("insert into aef_events (execution_id, user_id, seq, type, message) "
                           "values (%s, %s, 999, 'execution_update', '{}') "
                           "returning user_id, seq", (execution_id, intruder.id)).fetchone()
    assert row is not None
    assert str(row["user_id"]) == owner.id and row["seq"] == 1


# --- runner wake-ups ------------------------------------------------------------------------------


@pytest.fixture
def listener(db: Database) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        yield conn


def with_runner(db: Database, execution_id: str) -> str:
    """Give the execution a runner token (as launch and claim do); its wake channel follows."""
    token = uuid.uuid4().hex + uuid.uuid4().hex
    with admin_connection(db) as conn:
        conn.execute("update aef_executions set runner_token_hash = sha256(convert_to(%s, 'UTF8'))"
                     " where id = %s", (token, execution_id))
    return wake_channel(token)


def received(conn: psycopg.Connection[Any], count: int) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=2, stop_after=count)]


def test_command_wakes_the_runner(db: Database, owner: User, document_id: Any,
                                  listener: psycopg.Connection[Any]) -> None:
    execution_id = new_execution(db, owner, document_id)
    listener.execute(f"listen {with_runner(db, execution_id)}")
    create_command(db, execution_id, "pause")
    assert received(listener, 1) == [""], "a wake-up, and nothing to act on"


def test_stop_request_wakes_the_runner(db: Database, owner: User, document_id: Any,
                                       listener: psycopg.Connection[Any]) -> None:
    execution_id = new_execution(db, owner, document_id)
    listener.execute(f"listen {with_runner(db, execution_id)}")
    with db.as_service() as conn:
        conn.execute("update aef_executions set status = 'cancelling' where id = %s",
                     (execution_id,))
    assert received(listener, 1) == [""]


def test_checkpoint_answer_wakes_the_runner(db: Database, owner: User, document_id: Any,
                                            listener: psycopg.Connection[Any]) -> None:
    execution_id = new_execution(db, owner, document_id, status="waiting_checkpoint")
    checkpoint = create_checkpoint(db, execution_id, "ask")
    listener.execute(f"listen {with_runner(db, execution_id)}")
    with db.as_user(owner.claims) as conn:
        conn.execute("update aef_checkpoints set status = 'approved' where id = %s",
                     (checkpoint["id"],))
    assert received(listener, 1) == [""]


def test_a_new_runner_token_moves_the_channel(db: Database, owner: User, document_id: Any,
                                              listener: psycopg.Connection[Any]) -> None:
    execution_id = new_execution(db, owner, document_id)
    old = with_runner(db, execution_id)
    listener.execute(f"listen {old}")
    new = with_runner(db, execution_id)  # a resumed or re-claimed run
    assert new != old
    create_command(db, execution_id, "pause")
    assert list(listener.notifies(timeout=0.5)) == [], "the replaced runner is not woken"


def test_the_wake_channel_is_not_readable_by_any_aef_role(db: Database, owner: User,
                                                           document_id: Any) -> None:
    execution_id = new_execution(db, owner, document_id)
    with_runner(db, execution_id)
    identities = (lambda: db.as_user(owner.claims), db.as_service)
    for identity in identities:
        for function in ("wake_channel", "wake_runner"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), identity() as conn:
                conn.execute(f"select aef_private.{function}(%s)", (execution_id,))


def test_rolled_back_command_wakes_nobody(db: Database, owner: User, document_id: Any,
                                          listener: psycopg.Connection[Any]) -> None:
    execution_id = new_execution(db, owner, document_id)
    listener.execute(f"listen {with_runner(db, execution_id)}")
    with db.as_service() as conn:
        conn.execute("insert into aef_commands (execution_id, command) values (%s, 'stop')",
                     (execution_id,))
        raise psycopg.Rollback()
    assert list(listener.notifies(timeout=0.3)) == []


# CI runs this module on Postgres 15 and 17 (scripts/test.sh)
pytestmark = pytest.mark.supabase
