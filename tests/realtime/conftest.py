"""Fixtures: a throwaway database with the shim, and the Realtime server on a free port.

The server runs under uvicorn in a background thread (its own event loop), exactly as a client
on the network would meet it. Tokens are HS256, signed with the test secret the server's
Settings carry.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
import psycopg
import pytest
import uvicorn
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from aef.settings import Settings
from local.realtime.server import RealtimeServer
from tests.waiting import wait_until

JWT_SECRET = "realtime-tests-secret-at-least-32-bytes-long"

# Test-only policies; the real AEF policy comes from supabase/migrations.
TEST_POLICIES = """
create policy rt_test_read_own_room on realtime.messages for select to authenticated
  using (realtime.topic() = 'room:' || auth.uid()::text and extension in ('broadcast', 'presence'));
create policy rt_test_write_own_room on realtime.messages for insert to authenticated
  with check (realtime.topic() = 'room:' || auth.uid()::text
              and extension in ('broadcast', 'presence'));
"""


def as_sent(payload: dict[str, Any]) -> dict[str, Any]:
    """A delivered broadcast's payload as it was sent: Supabase's realtime.send adds the
    message's id (a UUID) to a payload that has none; checked here, then taken off."""
    rest = dict(payload)
    uuid.UUID(rest.pop("id"))
    return rest


def make_token(
    sub: str | None,
    *,
    role: str = "authenticated",
    ttl: float = 3600,
    secret: str = JWT_SECRET,
    **extra: Any,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"role": role, "iat": now, "exp": int(now + ttl), **extra}
    if sub is not None:
        claims["sub"] = sub
    if role == "authenticated":
        claims.setdefault("aud", "authenticated")
    return jwt.encode(claims, secret, algorithm="HS256")


def seconds_to_expiry(token: str) -> float:
    """How long until `token` expires (for tests that outlive a token on purpose)."""
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return float(exp) - time.time()


@dataclass(frozen=True)
class RunningServer:
    http_url: str
    ws_url: str
    database_url: str
    anon_key: str
    server: RealtimeServer

    def socket_url(self, vsn: str | None = "1.0.0", apikey: str | None = None) -> str:
        key = self.anon_key if apikey is None else apikey
        query = [f"apikey={key}"] if key else []
        if vsn:
            query.append(f"vsn={vsn}")
        return f"{self.ws_url}?{'&'.join(query)}"

    def send(self, topic: str, event: str, payloads: list[dict[str, Any]],
             *, private: bool = True) -> None:
        """`select realtime.send(...)` once per payload, each in its own transaction."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            for payload in payloads:
                conn.execute("select realtime.send(%s, %s, %s, %s)",
                             (Jsonb(payload), event, topic, private))


@pytest.fixture(scope="session")
def realtime_database(supabase_cluster: Any) -> Iterator[str]:
    """A Supabase-shaped database without AEF: the server's own tests; used as `postgres`."""
    name = f"aef_rt_{uuid.uuid4().hex[:12]}"
    urls = supabase_cluster.database(name, migrate=False)
    try:
        with psycopg.connect(urls.postgres, autocommit=True) as conn:
            conn.execute(TEST_POLICIES)
        yield urls.postgres
    finally:
        supabase_cluster.drop(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(database_url: str, **options: Any) -> Iterator[RunningServer]:
    """Run a RealtimeServer under uvicorn in a thread until the block ends."""
    settings = Settings().model_copy(update={
        "jwt_secret": SecretStr(JWT_SECRET),
        "database_url": database_url,
        "jwt_audience": "authenticated",
        "jwt_issuer": None,
    })
    server = RealtimeServer(settings, **options)
    port = _free_port()
    config = uvicorn.Config(server.app(), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", ws="websockets-sansio", ws_per_message_deflate=False)
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, name="realtime-uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: runner.started or not thread.is_alive(), within=15, interval=0.02,
               what="the realtime server to start")
    if not runner.started:
        raise RuntimeError("the realtime server did not start")
    anon_key = make_token(None, role="anon", ttl=10 * 365 * 86400, iss="supabase")
    try:
        yield RunningServer(f"http://127.0.0.1:{port}",
                            f"ws://127.0.0.1:{port}/realtime/v1/websocket",
                            database_url, anon_key, server)
    finally:
        runner.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the realtime server did not stop"


@pytest.fixture(scope="session")
def realtime_server(realtime_database: str) -> Iterator[RunningServer]:
    with serve(realtime_database, idle_timeout=30) as running:
        yield running
