"""The journal against a database that drops connections: retries, lost COMMITs, true logs.

Faults are real network faults: the journal (or the whole engine) talks to PostgreSQL through
a TCP proxy on 127.0.0.1 that can cut a COMMIT on its way to the server (the transaction
aborts), swallow the server's reply to a COMMIT that landed (the client cannot tell whether it
did), or refuse every connection for a while (an outage). Nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aef.db import Connection, Database
from aef.errors import Conflict, ServiceUnavailable
from aef.settings import Settings
from aef.store import runner as runner_store
from runner.journal import Journal
from runner.redaction import Secrets
from tests.runner.helpers import (
    Execution,
    events,
    execution_row,
    logs,
    make_execution,
    run_engine,
    step_rows,
    task,
)
from tests.runner.pages import Site

COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"  # psycopg's COMMIT: a simple-protocol Query message
# What the runner's process log says for each cut: a landed COMMIT is not written again; an
# aborted one is retried.
SAID = {"reply": "the connection dropped during COMMIT, which had landed",
        "request": "state write failed (database_unavailable); retrying"}


class FaultyProxy:
    """A TCP proxy in front of PostgreSQL that breaks one COMMIT on request, or goes down.

    `cut(how, after=marker)`: the next COMMIT on a connection that has sent `marker` (any
    COMMIT when None) is cut: "request" closes both sides before the COMMIT reaches the
    server (it aborts the transaction); "reply" forwards it, lets the server answer, and closes
    the client's side without passing the answer on (the transaction committed, the client
    saw the connection drop).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self.refusing = False
        self.cuts = 0
        self._cut: tuple[str, bytes | None] | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def cut(self, how: str, *, after: bytes | None = None) -> None:
        assert how in ("request", "reply")
        self._cut = (how, after)

    def down(self) -> None:
        """Refuse new connections and drop the live ones (the database went away)."""
        self.refusing = True
        for writer in list(self._writers):
            writer.close()

    def up(self) -> None:
        self.refusing = False

    def conninfo(self, url: str) -> str:
        return make_conninfo(url, host="127.0.0.1", port=str(self.listen_port))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_out.close()
            return
        try:
            server_in, server_out = await asyncio.open_connection(self.host, self.port)
        except OSError:
            client_out.close()
            return
        self._writers.update((client_out, server_out))
        swallow = asyncio.Event()
        seen = b""

        def close() -> None:
            for writer in (client_out, server_out):
                writer.close()
                self._writers.discard(writer)

        async def upstream() -> None:
            nonlocal seen
            while data := await client_in.read(65536):
                seen = (seen + data)[-4096:]
                if self._cut is not None and COMMIT in data:
                    how, marker = self._cut
                    if marker is None or marker in seen:
                        self._cut = None
                        self.cuts += 1
                        if how == "request":
                            break
                        swallow.set()
                server_out.write(data)
                await server_out.drain()
            close()

        async def downstream() -> None:
            while data := await server_in.read(65536):
                if swallow.is_set():
                    break  # the server has committed and answered; the client never hears it
                client_out.write(data)
                await client_out.drain()
            close()

        with suppress(Exception):
            await asyncio.gather(upstream(), downstream())
        close()


@asynccontextmanager
async def proxied(database_url: str, *, connect_timeout: float = 5.0
                  ) -> AsyncIterator[tuple[FaultyProxy, Database, str]]:
    target = conninfo_to_dict(database_url)
    proxy = FaultyProxy(str(target.get("host") or "127.0.0.1"), int(target.get("port") or 5432))
    await proxy.start()
    url = proxy.conninfo(database_url)
    database = Database(url, min_size=1, max_size=4, connect_timeout=connect_timeout)
    try:
        yield proxy, database, url
    finally:
        await asyncio.to_thread(database.close)
        await proxy.close()


def claimed(db: Database) -> Execution:
    execution = make_execution(db, [task("s1", [{"type": "navigate", "url": "about:blank"}])])
    with db.as_runner(execution.id, execution.token) as conn:
        assert runner_store.claim(conn, execution.id, "journal-test", 60) is not None
    return execution


def claimed_with_journal(db: Database) -> tuple[Execution, Journal]:
    """A claimed execution and its journal straight on the database (no faults)."""
    execution = claimed(db)
    return execution, journal_for(db, execution, 10, [])


def journal_for(database: Database, execution: Execution, retry_seconds: float,
                statuses: list[str]) -> Journal:
    return Journal(database, execution.id, execution.token, Secrets({}), statuses.append,
                   retry_seconds=retry_seconds)


def start_s1(execution: Execution) -> Callable[[Connection], Any]:
    def change(conn: Connection) -> Any:
        runner_store.upsert_step(conn, execution.id, "s1", 0, "running", label="s1",
                                 new_attempt=True)
        return runner_store.update_execution(conn, execution.id, status="running", progress=10)
    return change


def complete_at_once(execution: Execution) -> Callable[[Connection], Any]:
    """A write the database refuses: starting -> completed is not a legal transition."""
    def change(conn: Connection) -> Any:
        return runner_store.update_execution(conn, execution.id, status="completed")
    return change


def assert_outbox_intact(db: Database, execution: Execution) -> list[dict[str, Any]]:
    """seq 1..last_seq, and every event broadcast exactly once."""
    found = events(db, execution)
    seqs = [e["seq"] for e in found]
    assert seqs == list(range(1, execution_row(db, execution)["last_seq"] + 1))
    with psycopg.connect(db.admin_url) as conn:
        broadcast = [r[0] for r in conn.execute(
            "select (payload->>'seq')::int from realtime.messages where topic = %s"
            " and extension = 'broadcast' order by 1", (f"execution:{execution.id}",))]
    assert broadcast == seqs
    return found


@pytest.mark.parametrize("how", ["reply", "request"])
async def test_a_commit_cut_by_the_network_is_written_exactly_once(
        db: Database, runner_database_url: str, how: str, caplog: pytest.LogCaptureFixture) -> None:
    execution = claimed(db)
    statuses: list[str] = []
    async with proxied(runner_database_url) as (proxy, database, _url):
        journal = journal_for(database, execution, 10, statuses)
        journal.log("info", "progress line")
        proxy.cut(how)
        row = await journal.commit(start_s1(execution), says=[
            journal.entry("info", "Step started: s1", step_id="s1")])

    assert proxy.cuts == 1 and SAID[how] in caplog.text
    assert row is not None and row["status"] == "running" and statuses == ["running"]
    steps = step_rows(db, execution)
    assert (steps[("s1", 0)]["status"], steps[("s1", 0)]["attempts"]) == ("running", 1)
    assert [line["message"] for line in logs(db, execution)] \
        == ["progress line", "Step started: s1"]
    written = assert_outbox_intact(db, execution)
    assert [e["type"] for e in written] == ["execution_update"]
    assert [entry["message"] for entry in written[0]["message"]["logs"]] \
        == ["progress line", "Step started: s1"]


async def test_an_outage_longer_than_the_budget_abandons_the_write_truthfully(
        db: Database, runner_database_url: str) -> None:
    execution = claimed(db)
    statuses: list[str] = []
    async with proxied(runner_database_url, connect_timeout=0.3) as (proxy, database, _url):
        journal = journal_for(database, execution, 1.0, statuses)
        journal.log("info", "progress before the outage")
        proxy.down()
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as caught:
            await journal.commit(start_s1(execution), says=[
                journal.entry("info", "Step completed: s1", step_id="s1")])
        took = time.monotonic() - started
        assert caught.value.code == "database_unavailable"
        assert 1.0 <= took < 8.0, took  # retried for the budget (1 s), then gave up
        assert logs(db, execution) == [] and step_rows(db, execution) == {}
        assert statuses == []

        proxy.up()
        journal.retry_seconds = 30  # the pool reconnects with its own backoff
        await journal.flush()

    assert step_rows(db, execution) == {}
    assert [(line["level"], line["message"]) for line in logs(db, execution)] == [
        ("info", "progress before the outage"),
        ("warn", "Not recorded: Step completed: s1 (The database is unavailable)")]
    assert_outbox_intact(db, execution)


async def test_a_refused_write_is_not_retried_and_its_line_is_not_written(
        db: Database) -> None:
    execution, journal = claimed_with_journal(db)
    journal.log("info", "progress line")
    started = time.monotonic()
    with pytest.raises(Conflict) as caught:
        await journal.commit(complete_at_once(execution),
                             says=[journal.entry("info", "Execution completed")])
    assert caught.value.code == "illegal_transition"
    assert time.monotonic() - started < 1.0
    await journal.flush()
    messages = [line["message"] for line in logs(db, execution)]
    assert messages[0] == "progress line"
    assert messages[1].startswith("Not recorded: Execution completed (")
    assert len(messages) == 2
    assert execution_row(db, execution)["status"] == "starting"


async def test_a_line_logged_after_a_background_write_is_written_after_its_lines(
        db: Database) -> None:
    """A step's completion waits in the background for its screenshot's upload while the next
    step logs (its error, say): the log still reads in the order things happened."""
    execution, journal = claimed_with_journal(db)
    uploaded = asyncio.Event()
    journal.log("info", "Waited for the form")
    journal.submit(start_s1(execution), says=[journal.entry("info", "Step started: s1")],
                   after=uploaded.wait())
    journal.log("error", "Timeout 500ms exceeded.")
    await asyncio.sleep(0.05)  # the background write waits for its upload meanwhile
    uploaded.set()
    await journal.commit(None, says=[journal.entry("info", "Recovery asked")])
    assert [line["message"] for line in logs(db, execution)] == [
        "Waited for the form", "Step started: s1", "Timeout 500ms exceeded.", "Recovery asked"]
    assert_outbox_intact(db, execution)


async def test_lines_a_failed_background_write_gives_back_keep_their_order(
        db: Database) -> None:
    execution, journal = claimed_with_journal(db)
    journal.log("info", "first")
    journal.submit(complete_at_once(execution),
                   says=[journal.entry("info", "Execution completed")])
    journal.log("info", "second")
    with pytest.raises(Conflict):  # the background write's refusal, told to the next write
        await journal.commit(start_s1(execution), says=[journal.entry("info", "Step started")])
    journal.log("info", "third")
    await journal.flush()
    without_reasons = [line["message"].split(" (")[0] for line in logs(db, execution)]
    assert without_reasons == ["first", "second", "Not recorded: Execution completed",
                               "Not recorded: Step started", "third"]


@pytest.mark.browser
@pytest.mark.parametrize("how", ["reply", "request"])
async def test_the_engine_rides_out_a_lost_commit_of_a_step_completion(
        db: Database, runner_database_url: str, settings: Settings, site: Site, how: str,
        caplog: pytest.LogCaptureFixture) -> None:
    plan = [task(f"s{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                           {"type": "click", "selector": "#go"}]) for i in range(3)]
    execution = make_execution(db, plan, config={"stepTimeout": 5})
    async with proxied(runner_database_url) as (proxy, database, url):
        proxy.cut(how, after=b"Step completed: s1")
        outcome = await asyncio.wait_for(
            run_engine(settings.model_copy(update={"database_url": url}), database,
                       execution), 90)

    assert proxy.cuts == 1 and SAID[how] in caplog.text
    assert outcome.status == "completed", outcome
    steps = step_rows(db, execution)
    assert {k[0]: (s["status"], s["attempts"]) for k, s in steps.items()} \
        == {f"s{i}": ("completed", 1) for i in range(3)}
    said = [line["step_id"] for line in logs(db, execution)
            if line["message"].startswith("Step completed: ")]
    assert said == ["s0", "s1", "s2"]
    written = assert_outbox_intact(db, execution)
    assert written[-1]["type"] == "execution_complete"
    assert execution_row(db, execution)["status"] == "completed"
