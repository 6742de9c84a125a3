"""Realtime delivery latency against a 1-second polling client, measured in the same run.

Each event is committed once, in one transaction that inserts a row into a plain table and
calls `realtime.send(...)`. Two observers watch the same commits:

* a realtime-py client (supabase-py's `acreate_client`, serializer 1.0.0) joined to a private
  channel on the local Realtime server, authorized by an RLS policy on `realtime.messages`;
* a poller that selects new rows from the table every second (the baseline it replaces).

Latency is from just before the transaction starts to the moment each observer sees the event;
events are spaced 50-250 ms apart at random so polling phases are spread evenly. Prints p50 and
p95 for both and the ratio polling / realtime, plus one JSON line for machines.

    .venv/bin/python bench/bench_realtime.py [--events 40] [--seed 7]

Needs PostgreSQL (DATABASE_URL or AEF_* settings; a throwaway database is created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402
import psycopg  # noqa: E402
import uvicorn  # noqa: E402
from psycopg import conninfo, sql  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from supabase import AsyncClientOptions, acreate_client  # noqa: E402

from aef.settings import Settings  # noqa: E402
from local.realtime.server import RealtimeServer  # noqa: E402

SECRET = "bench-realtime-secret-at-least-32-bytes"
POLL_SECONDS = 1.0
SETUP = """
create table bench_events (seq int primary key, payload jsonb not null);
create policy bench_read_own_room on realtime.messages for select to authenticated
  using (realtime.topic() = 'bench:' || auth.uid()::text and extension = 'broadcast');
"""


def token(sub: str | None, role: str, ttl: int) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"role": role, "iat": now, "exp": now + ttl}
    if sub:
        claims.update(sub=sub, aud="authenticated")
    return jwt.encode(claims, SECRET, algorithm="HS256")


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    name = f"aef_bench_rt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = conninfo.make_conninfo(admin_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((ROOT / "local" / "shim.sql").read_text())
            conn.execute(SETUP)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))


@contextmanager
def realtime_server(database_url: str) -> Iterator[str]:
    settings = Settings().model_copy(update={
        "jwt_secret": SecretStr(SECRET), "database_url": database_url,
        "jwt_audience": "authenticated", "jwt_issuer": None})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    runner = uvicorn.Server(uvicorn.Config(RealtimeServer(settings).app(), host="127.0.0.1",
                                           port=port, log_level="warning",
                                           ws="websockets-sansio",
                                           ws_per_message_deflate=False))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not runner.started:
        if time.monotonic() > deadline:
            raise RuntimeError("realtime server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.should_exit = True
        thread.join(timeout=15)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run(database_url: str, base_url: str, events: int, seed: int) -> dict[str, Any]:
    user = str(uuid.uuid4())
    topic = f"bench:{user}"
    started: dict[int, float] = {}
    realtime_seen: dict[int, float] = {}
    polled_seen: dict[int, float] = {}
    all_seen = asyncio.Event()

    def check_done() -> None:
        if len(realtime_seen) == events and len(polled_seen) == events:
            all_seen.set()

    def on_broadcast(message: Any) -> None:
        realtime_seen[int(message["payload"]["seq"])] = time.perf_counter()
        check_done()

    client = await acreate_client(base_url, token(None, "anon", 3600),
                                  AsyncClientOptions(realtime={"auto_reconnect": False}))
    await client.realtime.set_auth(token(user, "authenticated", 3600))
    channel = client.channel(topic, {"config": {"broadcast": {"ack": False, "self": False},
                                                "presence": {"key": "", "enabled": False},
                                                "private": True}})
    channel.on_broadcast("bench", on_broadcast)
    await channel.subscribe()
    if not channel.is_joined:
        raise RuntimeError("the benchmark channel was not joined")

    async def poll() -> None:
        last = 0
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            while len(polled_seen) < events:
                cur = await conn.execute("select seq from bench_events where seq > %s"
                                         " order by seq", (last,))
                now = time.perf_counter()
                for (seq,) in await cur.fetchall():
                    polled_seen[seq] = now
                    last = max(last, seq)
                check_done()
                await asyncio.sleep(POLL_SECONDS)

    poller = asyncio.create_task(poll())
    rng = random.Random(seed)
    async with await psycopg.AsyncConnection.connect(database_url) as writer:
        for seq in range(1, events + 1):
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            payload = Jsonb({"seq": seq})
            started[seq] = time.perf_counter()
            async with writer.transaction():
                await writer.execute("insert into bench_events (seq, payload) values (%s, %s)",
                                     (seq, payload))
                await writer.execute("select realtime.send(%s, 'bench', %s, true)",
                                     (payload, topic))
    await asyncio.wait_for(all_seen.wait(), timeout=POLL_SECONDS * 3 + 10)
    await poller
    await client.remove_all_channels()

    rt = [(realtime_seen[s] - started[s]) * 1000 for s in started]
    pl = [(polled_seen[s] - started[s]) * 1000 for s in started]
    in_order = sorted(realtime_seen, key=realtime_seen.__getitem__) == sorted(realtime_seen)
    return {
        "events": events,
        "realtime_p50_ms": statistics.median(rt),
        "realtime_p95_ms": percentile(rt, 0.95),
        "polling_p50_ms": statistics.median(pl),
        "polling_p95_ms": percentile(pl, 0.95),
        "realtime_in_order": in_order,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with throwaway_database(Settings().database_url) as url, realtime_server(url) as base:
        result = asyncio.run(run(url, base, args.events, args.seed))
    result["p50_ratio"] = result["polling_p50_ms"] / result["realtime_p50_ms"]
    result["p95_ratio"] = result["polling_p95_ms"] / result["realtime_p95_ms"]
    print(f"realtime (realtime-py) insert->receipt: p50 {result['realtime_p50_ms']:.1f} ms,"
          f" p95 {result['realtime_p95_ms']:.1f} ms, in order: {result['realtime_in_order']}")
    print(f"1 s polling baseline   insert->seen:    p50 {result['polling_p50_ms']:.1f} ms,"
          f" p95 {result['polling_p95_ms']:.1f} ms")
    print(f"ratio polling/realtime: p50 {result['p50_ratio']:.1f}x,"
          f" p95 {result['p95_ratio']:.1f}x")
    print(json.dumps({"bench": "realtime", **result}))


if __name__ == "__main__":
    main()
