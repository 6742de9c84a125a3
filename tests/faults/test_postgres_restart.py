"""Fault a: PostgreSQL restarts (`pg_ctl restart -m fast`) while a real runner works.

The server is a PRIVATE Supabase-shaped cluster (local/supabase_pg.py, the suite's version)
so restarting it disturbs nobody else; the functions (aef_functions) are pointed at it with
`aef.db.set_database`, the runner subprocess (aef_runner_login) with DATABASE_URL.

Three moments, each with a deterministic outcome:

* during an action (no state write in flight): every connection (runner pool, LISTEN, the
  functions' pool) reconnects and the run completes as if nothing happened;
* while a state write is in flight (held on a row lock, so the restart kills it): the runner
  retries the write once the server is back (within half its lease) and the run completes,
  no step run twice, no event or log line written twice;
* an outage longer than that retry budget (the database drops the runner's write on every
  attempt, as a failover that keeps flapping would): the run ends `failed` with a resume
  option, the log does not claim the step whose completion was never recorded, and a resume
  through the API completes it without running the finished steps again.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from aef.db import Database
from local.postgres import EmbeddedPostgres
from local.supabase_pg import SupabaseCluster
from tests.conftest import PG_VERSION, TestBed
from tests.faults.checks import (
    assert_outbox_intact,
    assert_steps_journaled,
    blocking,
    execution_row,
    log_ids,
    log_lines,
    step_rows,
)
from tests.faults.conftest import Person, SpawnLauncher, new_person, use_database
from tests.integration.factories import admin_connection, create_document
from tests.runner.helpers import aef_document, eventually, task
from tests.runner.pages import Site

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG_WAIT_MS = 3500  # the action the restart happens in (a restart takes about a second)


class PrivatePostgres(EmbeddedPostgres):
    """The embedded cluster of `aef dev`, plus a restart (only ever of this private one)."""

    def restart(self) -> float:
        started = time.monotonic()
        self._run("pg_ctl", "restart", "-D", str(self.data_dir), "-m", "fast", "-w",
                  "-t", "60", "-l", str(self.log_file))
        return time.monotonic() - started


@dataclass(frozen=True)
class Private:
    server: PrivatePostgres
    url: str  # postgres (the operator): inspection, row locks
    runner_url: str  # aef_runner_login: the runner tasks' DATABASE_URL
    db: TestBed


@pytest.fixture(scope="module")
def private() -> Iterator[Private]:
    """A private Supabase-shaped cluster (the suite's Postgres version) that may be restarted."""
    base = Path(tempfile.mkdtemp(prefix="aef-faults-pg-"))
    cluster = SupabaseCluster(PG_VERSION, base, server_class=PrivatePostgres).start()
    try:
        urls = cluster.database("aef_faults")
        db = TestBed(urls)
        try:
            assert isinstance(cluster.server, PrivatePostgres)
            yield Private(cluster.server, urls.postgres, urls.runner, db)
        finally:
            db.close()
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def plan(site: Site) -> list[dict[str, Any]]:
    def step(i: int, wait_ms: int) -> dict[str, Any]:
        return task(f"s{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                              {"type": "wait", "timeoutMs": wait_ms},
                              {"type": "click", "selector": "#go"}])
    return [step(0, 300), step(1, 300), step(2, LONG_WAIT_MS), step(3, 300), step(4, 300)]


async def start_run(api: Any, private: Private, person: Person, site: Site,
                    spawn: Any, *, lease_seconds: int = 15) -> tuple[str, SpawnLauncher]:
    """A run through the API; the runner retries a failed state write for lease/2 seconds."""
    launcher = spawn(DATABASE_URL=private.runner_url, AEF_LEASE_SECONDS=str(lease_seconds))
    document = create_document(private.db, person.user,
                               document=aef_document(plan(site), {"stepTimeout": 10}))
    reply = await blocking(api.call, "POST", "/api/aef/execute", person.token,
                           {"aefDocumentId": str(document["id"])})
    assert reply.status == 202 and reply.body["status"] == "queued", reply.body
    return reply.body["executionId"], launcher


async def in_the_long_wait(db: Database, execution_id: str) -> None:
    """s2 is running and its navigate line is flushed: the runner is inside the long wait."""
    def probe() -> bool:
        s2 = step_rows(db, execution_id).get("s2")
        return bool(s2 and s2["status"] == "running" and any(
            line["step_id"] == "s2" and line["category"] == "action"
            for line in log_lines(db, execution_id)))
    await eventually(probe, within=60, interval=0.02, what="the runner inside s2's wait")


class Poller:
    """GET /live through the handler every 100 ms while the server restarts."""

    def __init__(self, api: Any, person: Person, execution_id: str) -> None:
        self.api, self.person, self.execution_id = api, person, execution_id
        self.replies: list[tuple[int, str | None, float]] = []
        self._stop = threading.Event()

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                reply = self.api.call("GET", f"/api/aef/live/{self.execution_id}",
                                      self.person.token)
                code = reply.body.get("code") if isinstance(reply.body, dict) else None
                self.replies.append((reply.status, code, time.monotonic() - started))
                self._stop.wait(0.1)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def stop(self) -> None:
        self._stop.set()


async def restart_while_polling(private: Private, poller: Poller) -> float:
    thread = threading.Thread(target=poller.run, name="live-poller")
    thread.start()
    try:
        return await asyncio.to_thread(private.server.restart)
    finally:
        await asyncio.sleep(0.5)
        poller.stop()
        await asyncio.to_thread(thread.join, 30)


def assert_functions_rode_it_out(poller: Poller) -> None:
    """Each call during the restart either waited for the server or said so (503)."""
    assert poller.replies
    assert {(status, code) for status, code, _ in poller.replies} <= {
        (200, None), (503, "database_unavailable")}, poller.replies
    assert poller.replies[-1][0] == 200


async def test_restart_during_an_action_the_run_completes(
        api: Any, private: Private, site: Site, spawn: Any) -> None:
    with use_database(private.db):
        person = new_person(private.db)
        execution_id, launcher = await start_run(api, private, person, site, spawn)
        proc = launcher.latest()
        await in_the_long_wait(private.db, execution_id)
        flushed = log_ids(private.db, execution_id)
        poller = Poller(api, person, execution_id)
        took = await restart_while_polling(private, poller)
        assert took < LONG_WAIT_MS / 1000 - 0.6, "the restart outlasted the action"
        assert_functions_rode_it_out(poller)

        assert await asyncio.to_thread(proc.wait, 60) == 0, launcher.output()
        row = execution_row(private.db, execution_id)
        assert row["status"] == "completed" and row["progress"] == 100
        steps = step_rows(private.db, execution_id)
        assert {k: (s["status"], s["attempts"]) for k, s in steps.items()} \
            == {f"s{i}": ("completed", 1) for i in range(5)}
        assert log_ids(private.db, execution_id)[:len(flushed)] == flushed
        assert "LISTEN connection lost" in launcher.output()  # the restart did reach it
        logs = await blocking(api.call, "GET", f"/api/aef/logs/{execution_id}", person.token,
                              query={"limit": "500"})
        assert logs.status == 200
        assert [line["id"] for line in logs.body["logs"]] == log_ids(private.db, execution_id)
        assert_outbox_intact(private.db, execution_id)
        assert_steps_journaled(private.db, execution_id)



RETRIED = "state write failed (database_unavailable); retrying"  # the runner's stderr says so


def hold_step_row(private: Private, execution_id: str, step_id: str) -> psycopg.Connection[Any]:
    """Lock a step's row: the runner's next write of that step blocks on it, in flight."""
    holder: psycopg.Connection[Any] = psycopg.connect(private.url)
    holder.execute("select 1 from aef_execution_steps where execution_id = %s"
                   " and step_id = %s for update", (execution_id, step_id))
    return holder


def blocked_on(private: Private, pattern: str) -> list[int]:
    """Backends waiting on a lock while running a statement like `pattern`."""
    with admin_connection(private.db) as conn:
        return [int(r["pid"]) for r in conn.execute(
            "select pid from pg_stat_activity where wait_event_type = 'Lock'"
            " and query ilike %s", (pattern,)).fetchall()]


STEP_WRITE = "%insert into aef_execution_steps%"  # upsert_step: "s2 completed"
FAIL_WRITE = "%update aef_execution_steps set status = 'failed'%"  # the final `failed` write


def assert_each_step_said_done_once(db: Database, execution_id: str) -> None:
    said_done = [line["step_id"] for line in log_lines(db, execution_id)
                 if line["message"].startswith("Step completed: ")]
    assert said_done == [f"s{i}" for i in range(5)], said_done


async def test_restart_while_a_state_write_is_in_flight_the_write_is_retried_and_completes(
        api: Any, private: Private, site: Site, spawn: Any) -> None:
    with use_database(private.db):
        person = new_person(private.db)
        execution_id, launcher = await start_run(api, private, person, site, spawn)
        proc = launcher.latest()
        await in_the_long_wait(private.db, execution_id)

        # hold s2's row: the runner's "s2 completed" transaction blocks on it, in flight
        holder = hold_step_row(private, execution_id, "s2")
        await eventually(lambda: blocked_on(private, STEP_WRITE), within=10, interval=0.02,
                         what="the s2 write to block")
        flushed = log_ids(private.db, execution_id)
        poller = Poller(api, person, execution_id)
        await restart_while_polling(private, poller)  # kills the write (and the holder)
        holder.close()
        assert_functions_rode_it_out(poller)

        assert await asyncio.to_thread(proc.wait, 60) == 0, launcher.output()
        assert RETRIED in launcher.output()  # the restart did cut the write
        assert len(launcher.launched) == 1  # no resume was needed
        row = execution_row(private.db, execution_id)
        assert row["status"] == "completed" and row["progress"] == 100, row["error"]
        steps = step_rows(private.db, execution_id)
        assert {k: (s["status"], s["attempts"]) for k, s in steps.items()} \
            == {f"s{i}": ("completed", 1) for i in range(5)}
        assert log_ids(private.db, execution_id)[:len(flushed)] == flushed
        assert_outbox_intact(private.db, execution_id)
        assert_steps_journaled(private.db, execution_id)
        assert_each_step_said_done_once(private.db, execution_id)


async def test_an_outage_longer_than_the_retry_budget_fails_resumably_then_resumes(
        api: Any, private: Private, site: Site, spawn: Any) -> None:
    # a 3 s lease: the runner gives a failed state write 1.5 s before it fails the run
    with use_database(private.db):
        person = new_person(private.db)
        execution_id, launcher = await start_run(api, private, person, site, spawn,
                                                 lease_seconds=3)
        proc = launcher.latest()
        await in_the_long_wait(private.db, execution_id)

        holder = hold_step_row(private, execution_id, "s2")
        await eventually(lambda: blocked_on(private, STEP_WRITE), within=10, interval=0.02,
                         what="the s2 write to block")
        flushed = log_ids(private.db, execution_id)

        # every attempt of the "s2 completed" write loses its connection, until the runner
        # gives up and writes the failure (which then waits on the same row)
        def drop_the_step_write() -> int:
            with admin_connection(private.db) as conn:
                dropped = conn.execute(
                    "select count(*) filter (where pg_terminate_backend(pid)) as n"
                    " from pg_stat_activity where wait_event_type = 'Lock'"
                    " and query ilike %s", (STEP_WRITE,)).fetchone()
            return int(dropped["n"]) if dropped else 0

        kills = 0
        started = time.monotonic()
        while not blocked_on(private, FAIL_WRITE):
            kills += await asyncio.to_thread(drop_the_step_write)
            assert time.monotonic() - started < 30, "the runner never gave up"
            await asyncio.sleep(0.02)
        holder.close()
        assert kills >= 2, "the write was retried"

        assert await asyncio.to_thread(proc.wait, 60) == 1, launcher.output()
        assert RETRIED in launcher.output()
        row = execution_row(private.db, execution_id)
        assert row["status"] == "failed"
        assert row["error"]["message"] \
            == "The runner failed: ServiceUnavailable: The database is unavailable"
        assert [o["action"] for o in row["error"]["recovery_options"]] == ["resume"]
        before = step_rows(private.db, execution_id)
        assert {k: s["status"] for k, s in before.items()} \
            == {"s0": "completed", "s1": "completed", "s2": "failed"}
        assert log_ids(private.db, execution_id)[:len(flushed)] == flushed
        assert_outbox_intact(private.db, execution_id)
        # the log does not claim what the rows deny: s2's line was rewritten, not flushed
        assert_steps_journaled(private.db, execution_id)
        assert [line["message"] for line in log_lines(private.db, execution_id)
                if line["step_id"] == "s2" and line["message"].startswith("Not recorded")] \
            == ["Not recorded: Step completed: s2 (The database is unavailable)"]

        resumed = await blocking(api.call, "POST", f"/api/aef/action/{execution_id}",
                                 person.token, {"action": "resume"})
        assert resumed.status == 200 and resumed.body["status"] == "queued", resumed.body
        assert await asyncio.to_thread(launcher.latest().wait, 60) == 0, launcher.output()
        row = execution_row(private.db, execution_id)
        assert row["status"] == "completed" and row["progress"] == 100
        steps = step_rows(private.db, execution_id)
        assert {k: (s["status"], s["attempts"]) for k, s in steps.items()} == {
            "s0": ("completed", 1), "s1": ("completed", 1), "s2": ("completed", 2),
            "s3": ("completed", 1), "s4": ("completed", 1)}
        for key in ("s0", "s1"):
            assert steps[key]["finished_at"] == before[key]["finished_at"]
        assert log_ids(private.db, execution_id)[:len(flushed)] == flushed
        assert_outbox_intact(private.db, execution_id)
        assert_steps_journaled(private.db, execution_id)
        assert_each_step_said_done_once(private.db, execution_id)
