"""RealtimeHub: the one LISTEN connection, the subscriptions, and the fan-out.

Supabase Realtime learns about new `realtime.messages` rows through logical replication; the
local shim instead NOTIFYs `aef_realtime` with each row's id, topic, inserted_at and private
flag. One task LISTENs (reconnecting with backoff), a second fetches the rows in batches, in
notification order (which is commit order), and hands each to the channels joined to that topic
with the same privacy — private rows to private joins, public rows to public joins — as
Realtime's tenant topics do. A frame is encoded once per serializer, not once per socket.

After a reconnect the rows inserted while the listener was away are replayed from the table
(those already delivered are remembered by id), so a database restart does not lose messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from local.realtime.serializers import Frame, UserBroadcast
from local.schema import PARTITIONS

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "aef_realtime"
TOPIC_PREFIX = "realtime:"
MAX_BATCH = 500
REMEMBERED_IDS = 20_000
CATCH_UP_WINDOW = timedelta(seconds=5)
PARTITION_EVERY_SECONDS = 6 * 3600.0

_FETCH = """
select m.id::text, m.topic, m.event, m.private, m.payload::text, m.inserted_at
from unnest(%s::uuid[], %s::timestamp[]) with ordinality as k(id, inserted_at, n)
join realtime.messages m on m.id = k.id and m.inserted_at = k.inserted_at
where m.extension = 'broadcast'
order by k.n
"""
_CATCH_UP = """
select m.id::text, m.topic, m.event, m.private, m.payload::text, m.inserted_at
from realtime.messages m
where m.extension = 'broadcast' and m.inserted_at > %s
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
class _Note:
    id: str
    topic: str
    inserted_at: str
    private: bool | None


@dataclass(frozen=True, slots=True)
class _Row:
    id: str
    topic: str
    event: str | None
    private: bool
    payload: str | None
    inserted_at: datetime


class _CatchUp:
    """Queue marker: the listener reconnected, replay what was missed."""


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
    """Owns the LISTEN connection and every subscription of this server."""

    def __init__(
        self,
        database_url: str,
        pool: AsyncConnectionPool,
        *,
        channel: str = DEFAULT_CHANNEL,
        partition_every_seconds: float = PARTITION_EVERY_SECONDS,
    ) -> None:
        self.database_url = database_url
        self.pool = pool
        self.channel = channel
        self.partition_every_seconds = partition_every_seconds
        self.listening = asyncio.Event()
        self.presence = Presence()
        self._subs: dict[Key, dict[Subscriber, None]] = {}
        self._queue: asyncio.Queue[str | _CatchUp] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._last_inserted_at: datetime | None = None
        self._connected_before = False

    # lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; returns once LISTEN is active (or keeps retrying in the background)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="realtime-listen"),
            asyncio.create_task(self._dispatch_forever(), name="realtime-dispatch"),
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

    async def _listen_forever(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as conn:
                    await conn.execute(sql.SQL("listen {}").format(sql.Identifier(self.channel)))
                    if self._connected_before:
                        self._queue.put_nowait(_CatchUp())
                    self._connected_before = True
                    self.listening.set()
                    backoff = 0.2
                    log.info("realtime listening", extra={"channel": self.channel})
                    async for notify in conn.notifies():
                        self._queue.put_nowait(notify.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("realtime listen connection lost; reconnecting",
                            extra={"error": str(exc), "retryIn": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _dispatch_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._dispatch_until_done(batch)

    async def _dispatch_until_done(self, batch: list[str | _CatchUp]) -> None:
        """Retry a batch the database refused (restart, dropped connection) with backoff:
        the rows are in realtime.messages, so waiting loses nothing, and a retry delivers
        nothing twice (delivered ids are remembered). Later batches wait behind it: order
        is kept."""
        backoff = 0.2
        while True:
            try:
                await self._dispatch(batch)
                return
            except (psycopg.Error, TimeoutError) as exc:
                log.warning("realtime dispatch failed; retrying the batch",
                            extra={"error": str(exc), "count": len(batch), "retryIn": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _dispatch(self, batch: list[str | _CatchUp]) -> None:
        notes: list[_Note] = []
        for item in batch:
            if isinstance(item, _CatchUp):
                await self._flush(notes)
                notes = []
                await self._catch_up()
                continue
            note = _parse_note(item)
            if note is not None:
                notes.append(note)
        await self._flush(notes)

    async def _flush(self, notes: list[_Note]) -> None:
        for note in notes:
            self._advance(note.inserted_at)
        wanted = [n for n in notes if n.id not in self._delivered and self._has_subscribers(n)]
        if not wanted:
            return
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _FETCH, ([n.id for n in wanted], [n.inserted_at for n in wanted])
            )
            rows = [_Row(*r) for r in await cur.fetchall()]
        self._deliver_rows(rows)

    async def _catch_up(self) -> None:
        if self._last_inserted_at is None:
            return
        async with self.pool.connection() as conn:
            cur = await conn.execute(_CATCH_UP, (self._last_inserted_at - CATCH_UP_WINDOW,))
            rows = [_Row(*r) for r in await cur.fetchall()]
        rows = [r for r in rows if r.id not in self._delivered]
        if rows:
            log.info("realtime replayed messages missed while reconnecting",
                     extra={"count": len(rows)})
        self._deliver_rows(rows)

    def _has_subscribers(self, note: _Note) -> bool:
        privacies: Iterable[bool] = (True, False) if note.private is None else (note.private,)
        return any((note.topic, p) in self._subs for p in privacies)

    def _deliver_rows(self, rows: list[_Row]) -> None:
        for row in rows:
            self._remember(row)
            if row.event is None or row.payload is None:
                log.warning("realtime message without event or payload skipped",
                            extra={"id": row.id, "topic": row.topic})
                continue
            broadcast = UserBroadcast(row.event, row.payload.encode(), True, {"id": row.id})
            self.publish(row.topic, row.private, broadcast)

    def _remember(self, row: _Row) -> None:
        self._delivered[row.id] = None
        if len(self._delivered) > REMEMBERED_IDS:
            self._delivered.popitem(last=False)
        self._advance(row.inserted_at)

    def _advance(self, inserted_at: datetime | str) -> None:
        if isinstance(inserted_at, str):
            try:
                inserted_at = datetime.fromisoformat(inserted_at)
            except ValueError:
                return
        if self._last_inserted_at is None or inserted_at > self._last_inserted_at:
            self._last_inserted_at = inserted_at

    async def _partitions_forever(self) -> None:
        """Create tomorrow's partitions ahead of time, as the Realtime server's janitor does."""
        while True:
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(_ENSURE_PARTITIONS)
            except (psycopg.Error, TimeoutError) as exc:
                log.warning("realtime partition upkeep failed", extra={"error": str(exc)})
            await asyncio.sleep(self.partition_every_seconds)


def _parse_note(text: str) -> _Note | None:
    try:
        data = json.loads(text)
        private = data.get("private")
        return _Note(str(data["id"]), str(data["topic"]), str(data["inserted_at"]),
                     private if isinstance(private, bool) else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("realtime notification not understood", extra={"payload": text[:200]})
        return None
