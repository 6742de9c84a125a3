"""RealtimeHub: the poller of `realtime.messages`, the subscriptions, and the fan-out.

Supabase Realtime learns about new `realtime.messages` rows through logical replication, so
the writers' transactions do no extra work. This local server polls the table instead, on one
connection of its own: a NOTIFY per row (what it did before) makes every writing transaction
take PostgreSQL's cluster-wide notify-queue lock at commit and hold it through the commit's WAL
flush, i.e. it serializes all writers' commits (docs/performance.md, "Load").

Nothing is missed: each poll first reads the start of the oldest transaction still open (
`pg_stat_activity`), then the rows inserted since the previous poll's such horizon that were not
delivered yet. A row that was not visible at a poll belongs to a transaction that was open then
or began after it, and its `inserted_at` (the insert's own clock, local/shim.sql) is not older
than that transaction's start: so the next poll's window has it. Delivered ids are remembered
until the horizon passes them: nothing twice. Rows go out by `inserted_at`: when one
transaction's insert waits for another's commit (AEF's events take the execution's row lock)
the later insert has the later clock, so a topic's messages keep their commit order.

Assumed, as on Supabase: every session writes `inserted_at` in the same TimeZone (the server's
default), and no prepared (two-phase) transaction inserts messages (pg_stat_activity does not
show those). A transaction left open holds the window back: until it ends, every poll reads the
ids inserted since it began (and skips them).

Each row goes to the channels joined to its topic with the same privacy — private rows to
private joins, public rows to public joins — as Realtime's tenant topics do. A frame is encoded
once per serializer, not once per socket. A dropped connection is reopened and polling resumes
from the last horizon, so a database restart loses nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from local.realtime.serializers import Frame, UserBroadcast
from local.schema import PARTITIONS

log = logging.getLogger(__name__)

TOPIC_PREFIX = "realtime:"
POLL_MIN_SECONDS = 0.01  # right after a poll found rows
POLL_MAX_SECONDS = 0.1  # when idle (doubling from the minimum)
PARTITION_EVERY_SECONDS = 6 * 3600.0
APPLICATION_NAME = "aef-realtime-poll"

# The oldest open transaction's start: no row still to appear is older. When some session's
# activity is hidden from this login, a fixed window back instead.
_HORIZON = """
select case when count(*) filter (where a.state is null and a.backend_type = 'client backend') > 0
            then least(coalesce(min(a.xact_start), now()), now() - interval '5 seconds')
            else least(coalesce(min(a.xact_start), now()), now()) end::timestamp
from pg_stat_activity a
where a.datname = current_database() and a.pid <> pg_backend_pid()
"""
_POLL = """
select m.id::text, m.topic, m.event, m.private, m.payload::text, m.inserted_at
from realtime.messages m
where m.extension = 'broadcast' and m.inserted_at >= %s and not (m.id = any(%s::uuid[]))
order by m.inserted_at, m.id
"""
# Daily realtime.messages partitions, as Supabase Realtime makes them (see the file)
_ENSURE_PARTITIONS = PARTITIONS.read_text()

Broadcast = dict[str, Any] | UserBroadcast


class Subscriber(Protocol):
    """A joined channel: receives broadcasts and presence events for its topic."""

    def deliver(self, topic: str, broadcast: Broadcast, cache: dict[str, Frame]) -> None: ...

    def push_event(self, event: str, payload: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Row:
    id: str
    topic: str
    event: str | None
    private: bool
    payload: str | None
    inserted_at: datetime


Key = tuple[str, bool]  # (sub-topic, private)


class Presence:
    """Presence state per topic: who tracks what, as Phoenix.Presence reports it."""

    def __init__(self) -> None:
        self._state: dict[Key, dict[Subscriber, tuple[str, dict[str, Any]]]] = {}

    def state(self, key: Key) -> dict[str, Any]:
        """`presence_state` payload: `{presence_key: {metas: [meta, ...]}}`."""
        out: dict[str, Any] = {}
        for presence_key, meta in self._state.get(key, {}).values():
            out.setdefault(presence_key, {"metas": []})["metas"].append(meta)
        return out

    def track(self, key: Key, who: Subscriber, presence_key: str,
              payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Record (or replace) `who`'s meta; returns the (joins, leaves) diff."""
        entries = self._state.setdefault(key, {})
        leaves = self._as_diff(entries.get(who))
        meta = {**payload, "phx_ref": secrets.token_urlsafe(12)}
        entries[who] = (presence_key, meta)
        return self._as_diff((presence_key, meta)), leaves

    def untrack(self, key: Key, who: Subscriber) -> dict[str, Any]:
        """Forget `who`; returns the leaves diff (empty when it tracked nothing)."""
        entries = self._state.get(key, {})
        gone = entries.pop(who, None)
        if not entries:
            self._state.pop(key, None)
        return self._as_diff(gone)

    @staticmethod
    def _as_diff(entry: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
        return {} if entry is None else {entry[0]: {"metas": [entry[1]]}}


class RealtimeHub:
    """Owns the polling connection and every subscription of this server."""

    def __init__(
        self,
        database_url: str,
        pool: AsyncConnectionPool,
        *,
        partition_every_seconds: float = PARTITION_EVERY_SECONDS,
    ) -> None:
        self.database_url = database_url
        self.pool = pool
        self.partition_every_seconds = partition_every_seconds
        self.listening = asyncio.Event()
        self.presence = Presence()
        self._subs: dict[Key, dict[Subscriber, None]] = {}
        self._delivered: dict[str, datetime] = {}  # id -> inserted_at, until the horizon
        self._since: datetime | None = None  # rows from here on may still be new
        self._polls = 0  # polls completed (rows fanned out), for `caught_up`
        self._polled = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start polling; returns once the first poll ran (or keeps retrying in the background)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._poll_forever(), name="realtime-poll"),
            asyncio.create_task(self._partitions_forever(), name="realtime-partitions"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), timeout=10)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.listening.clear()

    # subscriptions --------------------------------------------------------------------------

    def subscribe(self, topic: str, private: bool, who: Subscriber) -> None:
        self._subs.setdefault((topic, private), {})[who] = None

    def unsubscribe(self, topic: str, private: bool, who: Subscriber) -> None:
        subs = self._subs.get((topic, private))
        if subs is not None:
            subs.pop(who, None)
            if not subs:
                del self._subs[(topic, private)]
        leaves = self.presence.untrack((topic, private), who)
        if leaves:
            self.push_event(topic, private, "presence_diff", {"joins": {}, "leaves": leaves})

    def subscriber_count(self, topic: str, private: bool) -> int:
        return len(self._subs.get((topic, private), ()))

    def publish(self, topic: str, private: bool, broadcast: Broadcast, *,
                exclude: Subscriber | None = None) -> int:
        """Deliver one broadcast to every channel joined to `topic`; returns how many."""
        cache: dict[str, Frame] = {}
        count = 0
        for who in list(self._subs.get((topic, private), ())):
            if who is exclude:
                continue
            who.deliver(TOPIC_PREFIX + topic, broadcast, cache)
            count += 1
        return count

    def push_event(self, topic: str, private: bool, event: str, payload: dict[str, Any]) -> None:
        """Push a channel event (presence_state/diff) to every channel on `topic`."""
        for who in list(self._subs.get((topic, private), ())):
            who.push_event(event, payload)

    # database -> sockets --------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, application_name=APPLICATION_NAME
                ) as conn:
                    reconnected = self._since is not None
                    if self._since is None:  # messages from now on, as a LISTEN would get
                        cur = await conn.execute("select now()::timestamp")
                        row = await cur.fetchone()
                        assert row is not None
                        self._since = row[0]
                    delay = POLL_MIN_SECONDS
                    while True:
                        rows = await self._poll(conn)
                        if reconnected and rows:
                            log.info("realtime replayed messages missed while reconnecting",
                                     extra={"count": len(rows)})
                        reconnected = False
                        self.listening.set()
                        backoff = 0.2
                        self._deliver_rows(rows)
                        async with self._polled:
                            self._polls += 1
                            self._polled.notify_all()
                        delay = POLL_MIN_SECONDS if rows else min(delay * 2, POLL_MAX_SECONDS)
                        await asyncio.sleep(delay)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("realtime poll connection lost; reconnecting",
                            extra={"error": str(exc), "retryIn": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def caught_up(self) -> None:
        """Return once a whole poll has run since the call: every message committed before it
        has been fanned out to the channels joined then. A subscriber joining afterwards gets
        only what is committed later, which is what tests of exact delivery need; without it, a
        message committed just before a join may reach the new subscriber (as it may from
        Supabase's replication stream, which also fans out what it reads after the join)."""
        target = self._polls + 2
        async with asyncio.timeout(10), self._polled:  # the poller is down: do not hang
            await self._polled.wait_for(lambda: self._polls >= target)

    async def _poll(self, conn: psycopg.AsyncConnection[Any]) -> list[_Row]:
        """The rows not delivered yet, oldest first; advances the horizon."""
        cur = await conn.execute(_HORIZON)
        row = await cur.fetchone()
        assert row is not None and self._since is not None
        horizon = row[0]
        since = self._since
        cur = await conn.execute(_POLL, (since, list(self._delivered)))
        rows = [_Row(*r) for r in await cur.fetchall()]
        # The next poll looks from here: whatever appears later is not older than this.
        self._since = max(since, horizon)
        self._delivered = {i: at for i, at in self._delivered.items() if at >= self._since}
        return rows

    def _deliver_rows(self, rows: list[_Row]) -> None:
        for row in rows:
            if row.inserted_at >= (self._since or row.inserted_at):
                self._delivered[row.id] = row.inserted_at
            if row.event is None or row.payload is None:
                log.warning("realtime message without event or payload skipped",
                            extra={"id": row.id, "topic": row.topic})
                continue
            if (row.topic, row.private) not in self._subs:
                continue
            broadcast = UserBroadcast(row.event, row.payload.encode(), True, {"id": row.id})
            self.publish(row.topic, row.private, broadcast)

    async def _partitions_forever(self) -> None:
        """Create tomorrow's partitions ahead of time, as the Realtime server's janitor does."""
        while True:
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(_ENSURE_PARTITIONS)
            except (psycopg.Error, TimeoutError) as exc:
                log.warning("realtime partition upkeep failed", extra={"error": str(exc)})
            await asyncio.sleep(self.partition_every_seconds)
