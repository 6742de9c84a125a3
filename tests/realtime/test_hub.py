"""The polling connection survives the database dropping it, without losing messages."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import psycopg
import pytest

from local.realtime.hub import APPLICATION_NAME
from tests.realtime.conftest import RunningServer, as_sent, make_token, serve
from tests.realtime.phx import PhxClient
from tests.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _terminate(database_url: str, *, poller: bool | None) -> int:
    """Drop the hub's polling connection (`poller`), every other client connection (`False`: its
    pool is then left holding dead ones) or all of them (`None`). Returns how many."""
    which = {True: "and application_name = %(name)s", False: "and application_name <> %(name)s",
             None: ""}[poller]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and backend_type = 'client backend'"
            f" and pid <> pg_backend_pid() {which}", {"name": APPLICATION_NAME}).fetchall()
    return len(rows)


async def test_messages_sent_while_the_poller_reconnects_are_delivered(
        realtime_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="local.realtime.hub")
    user = str(uuid.uuid4())
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        await client.join(topic, make_token(user))
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 0}])
        assert as_sent((await client.recv()).payload["payload"]) == {"n": 0}

        assert await asyncio.to_thread(_terminate, realtime_server.database_url, poller=True) == 1
        # Sent while nobody polls: read from realtime.messages after the reconnect.
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 1}, {"n": 2}])
        got = [(await client.recv(within=10)).payload["payload"] for _ in range(2)]
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 3}])
        got.append((await client.recv()).payload["payload"])
        assert [as_sent(p) for p in got] == [{"n": 1}, {"n": 2}, {"n": 3}]
        await client.expect_silence(0.3)  # and nothing twice
        assert any(r.getMessage().startswith("realtime replayed") for r in caplog.records)
    finally:
        await client.close()


def _pollers(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("select count(*) from pg_stat_activity where datname ="
                           " current_database() and application_name = %s",
                           (APPLICATION_NAME,)).fetchone()
    return int(row[0]) if row else 0


async def test_shutdown_closes_sockets_and_the_polling_connection(
        realtime_database: str) -> None:
    user = str(uuid.uuid4())
    before = await asyncio.to_thread(_pollers, realtime_database)
    serving = serve(realtime_database)
    running = serving.__enter__()
    client = await PhxClient.open(running.socket_url("2.0.0"), "2.0.0")
    await client.join(f"room:{user}", make_token(user))
    assert await asyncio.to_thread(_pollers, realtime_database) == before + 1
    # Stop uvicorn (in a thread: this loop must keep serving the client's close handshake).
    await asyncio.to_thread(serving.__exit__, None, None, None)
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code in (1001, 1012)
    await until(lambda: _pollers(realtime_database) == before)


async def test_every_connection_dropped_loses_nothing(
        realtime_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="local.realtime.hub")
    user = str(uuid.uuid4())
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        await client.join(topic, make_token(user))
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 0}])
        assert as_sent((await client.recv()).payload["payload"]) == {"n": 0}

        # the poller and the pool (as a database restart would): reopened, nothing lost
        assert await asyncio.to_thread(_terminate, realtime_server.database_url,
                                       poller=None) >= 2
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 1}, {"n": 2}])
        got = [(await client.recv(within=10)).payload["payload"] for _ in range(2)]
        assert [as_sent(p) for p in got] == [{"n": 1}, {"n": 2}]
        await client.expect_silence(0.3)  # and nothing twice
        assert any(r.getMessage().startswith("realtime poll connection lost")
                   for r in caplog.records)
    finally:
        await client.close()


async def test_a_topic_keeps_commit_order_when_a_later_transaction_began_first(
        realtime_server: RunningServer) -> None:
    """B begins first but inserts after A committed (as an AEF event waits for the execution's
    row lock): subscribers get A then B, even when both show up in the same poll."""
    user = str(uuid.uuid4())
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        await client.join(topic, make_token(user))

        def send_out_of_start_order() -> None:
            with psycopg.connect(realtime_server.database_url) as b, \
                    psycopg.connect(realtime_server.database_url, autocommit=True) as a:
                b.execute("select 1")  # B's transaction (and its now()) starts here
                time.sleep(0.05)
                a.execute("select realtime.send('{\"n\": \"A\"}'::jsonb, 'step', %s, true)",
                          (topic,))
                b.execute("select realtime.send('{\"n\": \"B\"}'::jsonb, 'step', %s, true)",
                          (topic,))
                b.commit()

        await asyncio.to_thread(send_out_of_start_order)
        got = [(await client.recv(within=10)).payload["payload"] for _ in range(2)]
        assert [as_sent(p) for p in got] == [{"n": "A"}, {"n": "B"}]
    finally:
        await client.close()
