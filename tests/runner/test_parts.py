"""The engine's parts on their own: placeholders paths, iteration numbers, the NOTIFY channel,
the polling backstop, screenshot storage on S3 (moto server)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from aef.db import Database
from aef.screenshots import ScreenshotStore, screenshot_key
from aef.settings import Settings
from runner.control import Control, wake_channel
from runner.flow import iteration_number, lookup
from tests.integration.factories import admin_connection, create_user
from tests.runner.helpers import make_execution, request_stop, send_command, task
from tests.waiting import until


def test_lookup_follows_dotted_paths_through_scopes() -> None:
    scope = {"email": {"id": "e1", "tags": ["a", "b"]}}
    variables = {"email": {"id": "shadowed"}, "count": 3}
    assert lookup("email.id", scope, variables) == "e1"
    assert lookup("email.tags.1", scope, variables) == "b"
    assert lookup("count", scope, variables) == 3
    with pytest.raises(KeyError):
        lookup("email.missing", scope, variables)
    with pytest.raises(KeyError):
        lookup("nothing", scope, variables)


def test_iteration_numbers_are_unique_for_nested_loops() -> None:
    seen = {iteration_number(iteration_number(0, outer), inner)
            for outer in range(1, 50) for inner in range(1, 50)}
    assert len(seen) == 49 * 49
    assert iteration_number(0, 3) == 3


def test_wake_channel_matches_the_database(db: Database) -> None:
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    with admin_connection(db) as conn:
        row = conn.execute("select aef_private.wake_channel(%s) as channel",
                           (execution.id,)).fetchone()
    assert row is not None and row["channel"] == wake_channel(execution.token)
    assert wake_channel(execution.token).isidentifier()  # safe to LISTEN on unquoted
    assert wake_channel("another token") != wake_channel(execution.token)


def test_screenshot_key_is_safe_and_ordered() -> None:
    key = screenshot_key("executions/", "abc", 7, "step/../1 é")
    assert key == "executions/abc/000007-step_.._1.jpg"  # no "/" can reach the key
    assert screenshot_key("p/", "e", 1, "...") == "p/e/000001-screen.jpg"


def test_screenshots_are_uploaded_and_signed(settings: Settings) -> None:
    store = ScreenshotStore(settings)
    store.start_at("exec-1", 41)
    key, url = store.put("exec-1", "open", b"\xff\xd8\xff\xe0fake-jpeg")
    assert key == "executions/exec-1/000041-open.jpg"
    assert "X-Amz-Expires=900" in url and "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"\xff\xd8\xff\xe0fake-jpeg"
    assert response.headers["content-type"] == "image/jpeg"
    assert store.put("exec-1", "next", b"x")[0].endswith("000042-next.jpg")
    assert httpx.get(store.sign("executions/exec-1/000042-next.jpg")).content == b"x"


async def test_polling_backstop_sees_commands_and_stops_without_listen(db: Database) -> None:
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    with db.as_runner(execution.id, execution.token) as conn:
        from aef.store import runner as runner_store
        runner_store.claim(conn, execution.id, "r1", 30)
    # an unreachable LISTEN server: only the 1 s poll can tell the runner anything
    control = Control(db, "postgresql://nobody@127.0.0.1:1/none", execution.id,
                      execution.token, poll_seconds=0.2)
    await control.start()
    try:
        control.commands_hint = False
        send_command(db, execution, "pause")
        await until(lambda: control.commands_hint, within=2.5)
        assert not control.listening
        assert [c.command for c in await control.fetch()] == ["pause"]
        request_stop(db, execution)
        await until(lambda: control.stop_requested, within=2.5)
        assert control.status == "cancelling"
    finally:
        await control.close()


async def listening(control: Control) -> None:
    """Until the control's LISTEN connection is up (a wake-up sent before would be missed)."""
    await until(lambda: control.listening, within=5)


async def test_listen_wakes_the_runner_at_once(db: Database, settings: Settings) -> None:
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    control = Control(db, settings.database_url, execution.id, execution.token,
                      poll_seconds=60)
    await control.start()
    try:
        await listening(control)
        control.commands_hint = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.to_thread(send_command, db, execution, "pause")
        await control.wait(5)
        assert control.commands_hint and loop.time() - started < 1
    finally:
        await control.close()


async def test_forged_notifications_only_wake_the_runner(db: Database,
                                                         settings: Settings) -> None:
    """Anyone can pg_notify(): another tenant as `authenticated`, another execution's runner.
    Even aimed at the right channel, a forged stop/command/checkpoint payload changes nothing:
    the runner reads its rows, finds nothing new, and carries on."""
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    other = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    intruder = create_user(db)
    control = Control(db, settings.database_url, execution.id, execution.token,
                      poll_seconds=60)
    await control.start()
    try:
        await listening(control)
        control.commands_hint = False
        forged = ['{"kind":"stop"}', '{"kind":"command","id":1}',
                  '{"kind":"checkpoint","id":"00000000-0000-4000-8000-000000000000"}']
        channels = [control.channel, "aef_exec_" + execution.id.replace("-", "")]
        for identity in (db.as_user(intruder.claims), db.as_runner(other.id, other.token)):
            with identity as conn:
                for name in channels:
                    for payload in forged:
                        conn.execute("select pg_notify(%s, %s)", (name, payload))
        await control.wait(5)  # woken at once by the first forged notification
        await asyncio.sleep(0.3)  # the poke's read of the rows
        assert not control.stop_requested and control.status == "queued"
        assert await control.fetch() == [], "no command appeared"
    finally:
        await control.close()
    with admin_connection(db) as conn:
        row = conn.execute("select status from aef_executions where id = %s",
                           (execution.id,)).fetchone()
    assert row == {"status": "queued"}


async def test_a_stop_is_seen_within_a_second_of_its_notification(db: Database,
                                                                   settings: Settings) -> None:
    execution = make_execution(db, [task("s", [{"type": "wait", "timeoutMs": 1}])])
    control = Control(db, settings.database_url, execution.id, execution.token,
                      poll_seconds=60)  # no backstop within the test: only the wake-up
    await control.start()
    try:
        await listening(control)
        await asyncio.to_thread(request_stop, db, execution)
        await until(lambda: control.stop_requested, within=1)
        assert control.status == "cancelling"
    finally:
        await control.close()
