"""The LISTEN connection survives the database dropping it, without losing messages."""

from __future__ import annotations

import asyncio
import logging
import uuid

import psycopg
import pytest

from tests.realtime.conftest import RunningServer, as_sent, make_token, serve
from tests.realtime.phx import PhxClient
from tests.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _terminate(database_url: str, *, listener: bool) -> int:
    """Drop the hub's LISTEN connection (`listener`), or every other client connection (its
    pool is then left holding dead ones). Returns how many were dropped."""
    which = "" if listener else "not "
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and backend_type = 'client backend'"
            f" and query {which}ilike 'listen%%' and pid <> pg_backend_pid()").fetchall()
    return len(rows)


async def test_messages_sent_while_the_listener_reconnects_are_delivered(
        realtime_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="local.realtime.hub")
    user = str(uuid.uuid4())
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        await client.join(topic, make_token(user))
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 0}])
        assert as_sent((await client.recv()).payload["payload"]) == {"n": 0}

        assert await asyncio.to_thread(_terminate, realtime_server.database_url, listener=True) == 1
        # Sent while nobody listens: replayed from realtime.messages after the reconnect.
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 1}, {"n": 2}])
        got = [(await client.recv(within=10)).payload["payload"] for _ in range(2)]
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 3}])
        got.append((await client.recv()).payload["payload"])
        assert [as_sent(p) for p in got] == [{"n": 1}, {"n": 2}, {"n": 3}]
        await client.expect_silence(0.3)  # and nothing twice
        assert any(r.getMessage().startswith("realtime replayed") for r in caplog.records)
    finally:
        await client.close()


def _listeners(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("select count(*) from pg_stat_activity where datname ="
                           " current_database() and query ilike 'listen%%'").fetchone()
    return int(row[0]) if row else 0


async def test_shutdown_closes_sockets_and_the_listen_connection(
        realtime_database: str) -> None:
    user = str(uuid.uuid4())
    before = await asyncio.to_thread(_listeners, realtime_database)
    serving = serve(realtime_database)
    running = serving.__enter__()
    client = await PhxClient.open(running.socket_url("2.0.0"), "2.0.0")
    await client.join(f"room:{user}", make_token(user))
    assert await asyncio.to_thread(_listeners, realtime_database) == before + 1
    # Stop uvicorn (in a thread: this loop must keep serving the client's close handshake).
    await asyncio.to_thread(serving.__exit__, None, None, None)
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code in (1001, 1012)
    await until(lambda: _listeners(realtime_database) == before)


async def test_a_failed_fetch_is_retried_and_loses_nothing(
        realtime_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="local.realtime.hub")
    user = str(uuid.uuid4())
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        await client.join(topic, make_token(user))
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 0}])
        assert as_sent((await client.recv()).payload["payload"]) == {"n": 0}

        assert await asyncio.to_thread(_terminate, realtime_server.database_url,
                                       listener=False) >= 1
        # the hub's next fetch runs on a dead pooled connection and fails: retried, not lost
        await asyncio.to_thread(realtime_server.send, topic, "step", [{"n": 1}, {"n": 2}])
        got = [(await client.recv(within=10)).payload["payload"] for _ in range(2)]
        assert [as_sent(p) for p in got] == [{"n": 1}, {"n": 2}]
        await client.expect_silence(0.3)  # and nothing twice
        assert any(r.getMessage().startswith("realtime dispatch failed; retrying")
                   for r in caplog.records)
    finally:
        await client.close()
