"""Load: 50 executions' state traffic, their watchers' API reads, and Realtime fan-out.

What runs
---------
* **Simulated runners** (no browsers), one thread per execution, writing through the runner's
  own database role exactly what `runner/engine.py` writes, with the same `aef.store.runner`
  statements inside `Database.as_runner(...)` transactions: claim; `running` + event; then per
  step "step running + event", "a batch of action log lines + event" (the log flusher), "step
  completed + progress + event"; every `--checkpoint-every` steps a checkpoint (row +
  `waiting_checkpoint` + event) that a person answers through the API (POST /checkpoint, after
  `--answer-ms`), then `running` again (woken as runner/control.py is: LISTEN on the
  execution's wake channel, the 1 s poll as backstop); a heartbeat every `--heartbeat-seconds`
  and the 1 s polling backstop; `completed` + event at the end. Runners share a pool of
  `--runner-connections` server connections, as Supavisor's transaction pooler multiplexes real
  runners onto a few.
* **Watchers**, one per execution, poll GET /live?after=<lastSeq> every `--poll-ms` and read
  GET /logs?after=<cursor> every `--logs-every` polls, through the functions' Mangum handlers
  (API Gateway v2 events, JWT check, rate limit, RLS), each as the execution's owner.
* **Realtime**: the local RealtimeServer (local/realtime) under uvicorn on a free port, and
  `--clients` websocket clients speaking the raw Phoenix protocol (serializer 1.0.0), spread
  round-robin over the executions' private `execution:<id>` channels, each joined with the
  owner's access token (the `aef_execution_topic_read` policy decides).

* **A checkpoint probe** in each phase: one more runner in a process of its own (its own pool
  and LISTEN connection, as a real runner has), asking before every step, answered through
  the checkpoint function's handler in that process: approval request -> the runner's next
  action committed, unaffected by the 50 simulated runners sharing one interpreter.

Runners (with the checkpoint-answering person), the functions (watchers), the Realtime server
and the subscribers each run in their own process — separate machines in production — so one
party's Python work does not stall another's through the GIL. They still share this machine's
cores with PostgreSQL: on a 2-core box the loaded phase is CPU-bound, and the functions'
latency includes queueing for their single process (Lambda would run them side by side).

Two phases on one throwaway database (created with local.schema and dropped at the end):
**baseline** — the same runner traffic with no watchers and no subscribers; **loaded** — runners
+ watchers + subscribers. Each phase uses fresh executions.

What it prints
--------------
Per phase: runner events committed and events/s, p50/p99 of the runner's state transactions
(and of heartbeats / polls); approval request -> next action committed, p50/p95, for the 50
runners (`checkpointResume`) and for the probe (`checkpointProbe`, the goal's figure); for
the loaded phase API reads/s and p50/p99 of /live and /logs,
Realtime delivery latency p50/p99 (from the runner's commit returning to the frame arriving at a
client) and fan-out completeness; ratios loaded/baseline; then the loss checks, which make the
exit status non-zero when they fail:

* every execution's event seq is 1..n (`array_agg(seq order by seq)`) with n = last_seq, and
  every seq a runner got back from its insert is there;
* every event was broadcast exactly once (`realtime.messages`, per topic, seq list = outbox);
* every client received every event of its channel published after it joined, in order, once;
* every watcher saw contiguous seqs through /live and reached the final event.

A last line `JSON {...}` carries everything for machines.

    .venv/bin/python bench/load/run.py                 # 50 executions, 200 clients, 60 s
    .venv/bin/python bench/load/run.py --seconds 10    # quick run
    .venv/bin/python bench/load/run.py --step-ms 0     # runners flat out (capacity)

Needs PostgreSQL (DATABASE_URL names the admin connection; default 127.0.0.1:5432 as postgres).
tests/faults/test_load_smoke.py runs a 5-execution, 20-client, ~5 s version of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SECRET = "aef-load-bench-secret-0123456789-abcdef"
LOOP_STEP = "each_item"
BODY_STEP = "process_item"


@dataclass
class LoadOptions:
    executions: int = 50
    clients: int = 200
    seconds: float = 60.0
    baseline_seconds: float = 20.0  # 0: no baseline phase
    step_ms: float = 500.0  # one simulated step: running -> (half) logs -> (half) completed
    checkpoint_every: int = 10
    answer_ms: float = 200.0
    poll_ms: float = 1000.0
    logs_every: int = 5
    heartbeat_seconds: float = 5.0
    runner_connections: int = 16
    api_connections: int = 8
    drain_seconds: float = 20.0  # how long to wait for the last frames / watcher reads
    probe: bool = True  # the checkpoint probe: one more runner in its own process per phase


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Samples:
    """Latencies (ms) by name and counters, shared by the worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, list[float]] = defaultdict(list)
        self.counts: Counter[str] = Counter()

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self.values[name].append(ms)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def summary(self, name: str) -> dict[str, float]:
        values = self.values.get(name, [])
        return {"n": len(values), "p50": round(percentile(values, 0.50), 2),
                "p95": round(percentile(values, 0.95), 2),
                "p99": round(percentile(values, 0.99), 2)}


@dataclass(frozen=True)
class Sim:
    """One execution, its runner token and its owner's access token."""

    id: str
    runner_token: str
    user_id: str
    access_token: str

    @property
    def topic(self) -> str:
        return f"execution:{self.id}"


def user_token(user_id: str, secret: str, ttl: int = 3600) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user_id, "role": "authenticated", "aud": "authenticated",
                       "email": f"load-{user_id[:8]}@example.test", "iat": now,
                       "exp": now + ttl, "session_id": str(uuid.uuid4())},
                      secret, algorithm="HS256")


def anon_key(secret: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"role": "anon", "iss": "supabase", "iat": now, "exp": now + 86400},
                      secret, algorithm="HS256")


def plan_document() -> dict[str, Any]:
    """A loop over items with one task in its body: what the simulated runners report."""
    return {"meta": {"id": "load", "title": "Load benchmark", "version": "1.0"},
            "aef": {"config": {}, "version": "1.0", "plan": [{
                "id": LOOP_STEP, "label": "Each item", "kind": "loop", "method": "automated",
                "actions": [], "loop": {"iterator": "item", "over": None, "maxIterations": 9999},
                "children": [{"id": BODY_STEP, "label": "Process the item", "kind": "task",
                              "method": "automated",
                              "actions": [{"type": "click", "selector": "#go"}]}]}]}}


def create_executions(db: Any, count: int, secret: str, admin_url: str | None = None
                      ) -> list[Sim]:
    """Users, documents and queued executions, as POST /execute leaves them (one event).
    auth.users rows go in through `admin_url` (default: `db`'s own login)."""
    import psycopg
    from psycopg.types.json import Jsonb

    from aef.store import api as api_store

    users = [str(uuid.uuid4()) for _ in range(count)]
    with psycopg.connect(admin_url or db.url) as conn:
        for user_id in users:
            conn.execute("insert into auth.users (id, aud, role, email)"
                         " values (%s, 'authenticated', 'authenticated', %s)",
                         (user_id, f"load-{user_id[:8]}@example.test"))
    sims = []
    with db.as_service() as conn:
        for user_id in users:
            token = secrets.token_urlsafe(32)
            document_id = api_store.insert_document(conn, user_id, None, "Load benchmark",
                                                    plan_document())
            row = conn.execute(
                "insert into aef_executions (user_id, document_id, status, runner_token_hash,"
                " variables) values (%s, %s, 'queued', %s, %s) returning id",
                (user_id, document_id, hashlib.sha256(token.encode()).digest(),
                 Jsonb({}))).fetchone()
            execution_id = str(row["id"])
            entry = api_store.insert_log(conn, execution_id, "info", "system",
                                         "Execution queued")
            api_store.emit_event(conn, execution_id, "execution_update", {"logs": [entry]})
            sims.append(Sim(execution_id, token, user_id, user_token(user_id, secret)))
    return sims


# The API, through the functions' Mangum handlers ---------------------------------------------
class Api:
    """GET /live, GET /logs and POST /checkpoint as API Gateway v2 events into Mangum."""

    def __init__(self) -> None:
        from functions.checkpoint.app import handler as checkpoint
        from functions.logs.app import handler as logs

        self.logs_handler = logs
        self.checkpoint_handler = checkpoint

    def call(self, handler: Any, method: str, path: str, token: str, *,
             body: Any = None, query: dict[str, str] | None = None) -> tuple[int, Any]:
        from tests.apigw import apigw_event, invoke

        status, _, payload = invoke(handler, apigw_event(
            method, path, headers={"authorization": f"Bearer {token}"}, body=body,
            query=query))
        return status, payload


def thread_loop() -> None:
    """Mangum runs each request on the thread's event loop: give this thread one."""
    asyncio.set_event_loop(asyncio.new_event_loop())


class Responder:
    """The person who answers checkpoints through the API, `answer_ms` after they appear."""

    def __init__(self, api: Api, samples: Samples, answer_ms: float, threads: int = 2) -> None:
        self.api = api
        self.samples = samples
        self.answer_ms = answer_ms
        self.queue: queue.Queue[tuple[Sim, str, float] | None] = queue.Queue()
        # checkpoint id -> perf_counter() just before its approval request (t0 of the
        # approval -> the runner's next action latency, as bench/bench_checkpoint.py defines it)
        self.approved_at: dict[str, float] = {}
        self.threads = [threading.Thread(target=self._work, name=f"responder-{i}", daemon=True)
                        for i in range(threads)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def ask(self, sim: Sim, checkpoint_id: str) -> None:
        self.queue.put((sim, checkpoint_id, time.monotonic() + self.answer_ms / 1000))

    def _work(self) -> None:
        thread_loop()
        while True:
            item = self.queue.get()
            if item is None:
                return
            sim, checkpoint_id, due = item
            time.sleep(max(0.0, due - time.monotonic()))
            started = time.perf_counter()
            self.approved_at[checkpoint_id] = started
            status, _ = self.api.call(self.api.checkpoint_handler, "POST",
                                      f"/api/aef/checkpoint/{checkpoint_id}",
                                      sim.access_token, body={"response": "approve"})
            self.samples.add("api.checkpoint", (time.perf_counter() - started) * 1000)
            self.samples.count(f"api.checkpoint.{status}")

    def stop(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join(30)


class Waker:
    """The runners' LISTEN side, as runner/control.py does it: each execution's wake channel
    (derived from its runner token; the checkpoint answer's trigger NOTIFYs it), with the 1 s
    poll as backstop. One session-mode connection LISTENs on every execution's channel here (a
    pool worker's share of connections; a lone ECS runner holds one of its own)."""

    def __init__(self, url: str, sims: list[Sim]) -> None:
        from runner.control import wake_channel

        self.url = url
        self.events = {wake_channel(s.runner_token): threading.Event() for s in sims}
        self.by_sim = {s.id: self.events[wake_channel(s.runner_token)] for s in sims}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="load-waker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the wake listener did not start")

    def _listen(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for channel in self.events:  # hex names (runner.control.wake_channel)
                conn.execute(f"listen {channel}")
            self._ready.set()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.2):
                    event = self.events.get(note.channel)
                    if event is not None:
                        event.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# Simulated runners -----------------------------------------------------------------------------
class SimRunner(threading.Thread):
    """One execution's runner traffic, statement for statement what runner/engine.py writes."""

    def __init__(self, sim: Sim, db: Any, opts: LoadOptions, deadline: float,
                 samples: Samples, sent: dict[tuple[str, int], float],
                 responder: Responder, wake: threading.Event | None = None) -> None:
        super().__init__(name=f"runner-{sim.id[:8]}", daemon=True)
        self.wake = wake
        self.sim = sim
        self.db = db
        self.opts = opts
        self.deadline = deadline
        self.samples = samples
        self.sent = sent
        self.responder = responder
        self.runner_id = f"load:{os.getpid()}:{sim.id[:8]}"
        self.seqs: list[int] = []
        self.error: str | None = None
        self.steps = 0
        self._next_beat = 0.0
        self._next_poll = 0.0

    def _tx(self, name: str, fn: Callable[[Any], Any]) -> Any:
        started = time.perf_counter()
        with self.db.as_runner(self.sim.id, self.sim.runner_token) as conn:
            result = fn(conn)
        self.samples.add(name, (time.perf_counter() - started) * 1000)
        return result

    def _commit(self, records: list[Any], change: Callable[[Any], Any] | None,
                event: str = "execution_update") -> Any:
        """Journal.commit: buffered logs + the change + its event, in one transaction."""
        from aef.store import runner as runner_store

        result: list[Any] = [None]

        def write(conn: Any) -> int:
            entries = runner_store.insert_logs(conn, self.sim.id, records)
            if change is not None:
                result[0] = change(conn)
            return runner_store.insert_event(conn, self.sim.id, event, logs=entries)

        seq = self._tx("tx.state", write)
        self.sent[(self.sim.id, seq)] = time.time()
        self.seqs.append(seq)
        return result[0]

    def _background(self) -> None:
        """The heartbeat and the 1 s polling backstop the real runner runs beside its steps."""
        from aef.store import runner as runner_store

        now = time.monotonic()
        if now >= self._next_beat:
            self._next_beat = now + self.opts.heartbeat_seconds
            self._tx("tx.heartbeat", lambda c: runner_store.heartbeat(
                c, self.sim.id, self.runner_id, self.opts.heartbeat_seconds * 6))
        if now >= self._next_poll:
            self._next_poll = now + 1.0
            self._tx("tx.poll", lambda c: runner_store.poll(c, self.sim.id))

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self._background()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.25))

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # reported, and the loss checks will show the rest
            self.error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        from aef.store import runner as runner_store

        log = runner_store.LogRecord
        sim = self.sim
        row = self._tx("tx.claim", lambda c: runner_store.claim(c, sim.id, self.runner_id,
                                                         self.opts.heartbeat_seconds * 6))
        if row is None:
            raise RuntimeError("the execution could not be claimed")
        browser = {"isReady": True, "currentUrl": "about:blank", "lastAction": "Browser ready",
                   "mode": "automatic"}

        def started(conn: Any) -> Any:
            runner_store.upsert_step(conn, sim.id, LOOP_STEP, 0, "running", label="Each item",
                              new_attempt=True)
            return runner_store.update_execution(conn, sim.id, status="running", progress=0,
                                          current_step_id=LOOP_STEP, browser=browser)

        self._commit([log("debug", "browser", "Browser ready", details={"pid": 0}),
                      log("info", "execution", "Execution started")], started)
        half = self.opts.step_ms / 2000
        iteration = 0
        while time.monotonic() < self.deadline:
            iteration += 1
            label = f"Process the item ({iteration})"
            answered = None
            if self.opts.checkpoint_every and iteration % self.opts.checkpoint_every == 0:
                answered = self._checkpoint(iteration)
            progress = iteration % 100

            def running(conn: Any, it: int = iteration, p: int = progress,
                        lb: str = label) -> Any:
                runner_store.upsert_step(conn, sim.id, BODY_STEP, it, "running", label=lb,
                                  new_attempt=True)
                return runner_store.update_execution(conn, sim.id, status="running", progress=p,
                                              current_step_id=BODY_STEP, error=None,
                                              browser={"lastAction": f"Running: {lb}"})

            self._commit([log("info", "execution", f"Step started: {label}",
                              step_id=BODY_STEP)], running)
            if answered is not None and answered in self.responder.approved_at:
                # approval request sent -> this, the runner's next action, committed
                self.samples.add("checkpoint.resume", (time.perf_counter()
                                                       - self.responder.approved_at[answered])
                                 * 1000)
            self._pause(half)
            self._commit([log("info", "action", f"Clicked #go ({n})", step_id=BODY_STEP,
                              details={"type": "click", "durationMs": 12}) for n in range(3)],
                         None)
            self._pause(half)

            def completed(conn: Any, it: int = iteration, p: int = progress,
                          lb: str = label) -> Any:
                runner_store.upsert_step(conn, sim.id, BODY_STEP, it, "completed",
                                  result={"variables": {"item": it}})
                return runner_store.update_execution(
                    conn, sim.id, status="running", progress=p, variables={"last": it},
                    browser={"lastAction": f"Completed: {lb}",
                             "screenshot": f"https://example.test/{sim.id}/{it}.jpg"})

            self._commit([log("info", "execution", f"Step completed: {label}",
                              step_id=BODY_STEP)], completed)
            self.steps += 1
            self._background()

        def finished(conn: Any) -> Any:
            runner_store.upsert_step(conn, sim.id, LOOP_STEP, 0, "completed",
                              result={"iterations": iteration})
            return runner_store.update_execution(conn, sim.id, status="completed", progress=100,
                                          current_step_id=None, error=None,
                                          browser={"isReady": False, "mode": "closed",
                                                   "lastAction": "Completed"})

        self._commit([log("info", "execution", "Execution completed")], finished,
                     event="execution_complete")

    def _checkpoint(self, iteration: int) -> str:
        """Asked before the step; the person answers through the API; the step then runs."""
        from aef.store import runner as runner_store

        sim = self.sim
        title = f"Approve item {iteration}?"

        def ask(conn: Any) -> Any:
            checkpoint = runner_store.insert_checkpoint(conn, sim.id, BODY_STEP, iteration,
                                                 "before_step", title, title, "reject", 300)
            runner_store.upsert_step(conn, sim.id, BODY_STEP, iteration, "waiting_checkpoint",
                              label=title)
            runner_store.update_execution(conn, sim.id, status="waiting_checkpoint",
                                   current_step_id=BODY_STEP,
                                   browser={"lastAction": f"Waiting for approval: {title}"})
            return checkpoint

        checkpoint = self._commit([log_record("info", "checkpoint",
                                              f"Waiting for a person: {title}")],
                                  ask, event="checkpoint_required")
        checkpoint_id = str(checkpoint["id"])
        self.responder.ask(sim, checkpoint_id)
        asked = time.perf_counter()
        # As runner/control.py waits: woken by the answer's NOTIFY, else the 1 s poll.
        wake = self.wake or threading.Event()
        while True:
            wake.clear()  # a NOTIFY from here on wakes the wait below at once
            row = self._tx("tx.poll", lambda c: runner_store.get_checkpoint(c, checkpoint_id))
            if row is not None and row["status"] != "pending":
                break
            backstop = time.monotonic() + 1.0
            while not wake.is_set() and time.monotonic() < backstop:
                self._background()
                wake.wait(min(0.25, max(0.0, backstop - time.monotonic())))
        self.samples.add("checkpoint.wait", (time.perf_counter() - asked) * 1000)
        self.samples.count("checkpoints")
        return checkpoint_id


def log_record(level: str, category: str, message: str) -> Any:
    from aef.store import runner as runner_store

    return runner_store.LogRecord(level=level, category=category, message=message,
                                  step_id=BODY_STEP)


# Watchers ---------------------------------------------------------------------------------------
class Watcher(threading.Thread):
    """The person's screen without Realtime: /live polling plus a /logs reader."""

    def __init__(self, sim: Sim, api: Api, opts: LoadOptions, samples: Samples,
                 stop: threading.Event) -> None:
        super().__init__(name=f"watcher-{sim.id[:8]}", daemon=True)
        self.sim = sim
        self.api = api
        self.opts = opts
        self.samples = samples
        self.stop = stop
        self.last_seq = 0
        self.gaps = 0
        self.complete = False
        self.checkpoints_seen = 0
        self.log_cursor: str | None = None
        self.last_log_id = 0
        self.log_order_errors = 0
        self.error: str | None = None

    def run(self) -> None:
        thread_loop()
        try:
            self._run()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def _live(self) -> None:
        started = time.perf_counter()
        status, body = self.api.call(self.api.logs_handler, "GET", f"/api/aef/live/{self.sim.id}",
                                     self.sim.access_token, query={"after": str(self.last_seq)})
        self.samples.add("api.live", (time.perf_counter() - started) * 1000)
        self.samples.count(f"api.live.{status}")
        if status != 200:
            return
        for event in body["events"]:
            if event["seq"] != self.last_seq + 1:
                self.gaps += 1
            self.last_seq = max(self.last_seq, int(event["seq"]))
            if event["type"] == "checkpoint_required":
                self.checkpoints_seen += 1
            if event["type"] == "execution_complete":
                self.complete = True

    def _logs(self) -> None:
        query = {"limit": "500"}
        if self.log_cursor:
            query["after"] = self.log_cursor
        started = time.perf_counter()
        status, body = self.api.call(self.api.logs_handler, "GET", f"/api/aef/logs/{self.sim.id}",
                                     self.sim.access_token, query=query)
        self.samples.add("api.logs", (time.perf_counter() - started) * 1000)
        self.samples.count(f"api.logs.{status}")
        if status != 200:
            return
        for line in body["logs"]:
            if line["id"] <= self.last_log_id:
                self.log_order_errors += 1
            self.last_log_id = max(self.last_log_id, int(line["id"]))
        if body["logs"]:
            from aef.service import encode_cursor

            self.log_cursor = encode_cursor(self.last_log_id)

    def _run(self) -> None:
        polls = 0
        interval = self.opts.poll_ms / 1000
        while not self.stop.is_set():
            began = time.monotonic()
            self._live()
            polls += 1
            if self.opts.logs_every and polls % self.opts.logs_every == 0:
                self._logs()
            if self.complete:
                self._logs()
                return
            self.stop.wait(max(0.0, interval - (time.monotonic() - began)))


# Realtime ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def realtime_process(database_url: str, secret: str) -> Iterator[str]:
    """The local RealtimeServer under uvicorn in its own process; yields the websocket URL."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "AEF_JWT_SECRET": secret}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "local.realtime.server:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--ws", "websockets-sansio",
         "--ws-per-message-deflate", "false",  # as Supabase Realtime (Phoenix): uncompressed
         "--lifespan", "on", "--log-level", "warning"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the realtime server exited ({proc.returncode})")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the realtime server did not start")
            time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/realtime/v1/websocket"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Subscriber:
    """A raw Phoenix client (serializer 1.0.0) joined to one execution's private channel."""

    def __init__(self, index: int, sim: Sim) -> None:
        self.index = index
        self.sim = sim
        self.frames: list[tuple[int, float]] = []
        self.error: str | None = None
        self._ws: Any = None
        self._ref = 0
        self._tasks: list[asyncio.Task[None]] = []

    def _next_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    async def _push(self, topic: str, event: str, payload: Any, ref: str,
                    join_ref: str | None = None) -> None:
        await self._ws.send(json.dumps({"topic": topic, "event": event, "payload": payload,
                                        "ref": ref, "join_ref": join_ref}))

    async def join(self, url: str, apikey: str) -> None:
        from websockets.asyncio.client import connect

        self._ws = await connect(f"{url}?apikey={apikey}&vsn=1.0.0", open_timeout=30,
                                 max_queue=None)
        ref = self._next_ref()
        topic = f"realtime:{self.sim.topic}"
        await self._push(topic, "phx_join", {
            "config": {"broadcast": {"ack": False, "self": False},
                       "presence": {"enabled": False, "key": ""},
                       "postgres_changes": [], "private": True},
            "access_token": self.sim.access_token}, ref, ref)
        while True:
            frame = json.loads(await asyncio.wait_for(self._ws.recv(), 30))
            if frame["event"] == "phx_reply" and frame["ref"] == ref:
                if frame["payload"].get("status") != "ok":
                    raise RuntimeError(f"join refused: {frame['payload']}")
                break
        self._tasks = [asyncio.create_task(self._listen()),
                       asyncio.create_task(self._heartbeat())]

    async def _listen(self) -> None:
        try:
            async for raw in self._ws:
                frame = json.loads(raw)
                if frame["event"] == "broadcast":
                    message = frame["payload"]["payload"]
                    self.frames.append((int(message["seq"]), time.time()))
        except Exception as exc:  # a dropped socket is a finding, not a crash
            self.error = f"{type(exc).__name__}: {exc}"

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(20)
            await self._push("phoenix", "heartbeat", {}, self._next_ref())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()


# The watchers' and the subscribers' processes -------------------------------------------------
# Runners, the functions and the people's browsers are different machines in production; here
# they are different processes, so one party's Python work does not stall another's (GIL).
def _child_setup(secret: str) -> None:
    os.environ["AEF_JWT_SECRET"] = secret
    os.environ.setdefault("AEF_LAUNCHER", "ecs")
    import logging

    logging.getLogger("aef").setLevel(logging.WARNING)


def watchers_process(sims: list[Sim], opts: LoadOptions, database_url: str, secret: str,
                     stop: Any, out: Any) -> None:
    """Every execution's watcher, through the Mangum handlers, until each saw the end."""
    _child_setup(secret)
    from aef.db import Database, set_database

    db = Database(database_url, min_size=0, max_size=opts.api_connections)
    set_database(db)
    try:
        api = Api()
        samples = Samples()
        halt = threading.Event()
        watchers = [Watcher(sim, api, opts, samples, halt) for sim in sims]
        started = time.monotonic()
        for watcher in watchers:
            watcher.start()
        while any(w.is_alive() for w in watchers) and not stop.is_set():
            stop.wait(0.1)
        halt.set()
        for watcher in watchers:
            watcher.join(30)
        out.put({"wall": time.monotonic() - started, "values": dict(samples.values),
                 "counts": dict(samples.counts),
                 "watchers": [{"gaps": w.gaps, "complete": w.complete,
                               "checkpointsSeen": w.checkpoints_seen,
                               "logOrderErrors": w.log_order_errors, "error": w.error}
                              for w in watchers]})
    finally:
        db.close()


def clients_process(sims: list[Sim], clients: int, ws_url: str, secret: str,
                    drain_seconds: float, ready: Any, expect: Any, out: Any) -> None:
    """`clients` subscribers; reports when they are joined, then every frame they got."""
    _child_setup(secret)

    async def main() -> None:
        subscribers = [Subscriber(i, sims[i % len(sims)]) for i in range(clients)]
        gate = asyncio.Semaphore(25)
        key = anon_key(secret)

        async def join(sub: Subscriber) -> None:
            async with gate:
                await sub.join(ws_url, key)

        joined = time.monotonic()
        try:
            await asyncio.gather(*(join(s) for s in subscribers))
        except Exception as exc:
            out.put({"error": f"join failed: {type(exc).__name__}: {exc}"})
            return
        ready.put(time.monotonic() - joined)
        wanted: dict[str, int] = await asyncio.to_thread(expect.get)  # frames per channel
        for _ in range(int(drain_seconds * 10)):
            if all(len(s.frames) >= wanted[s.sim.id] for s in subscribers):
                break
            await asyncio.sleep(0.1)
        for sub in subscribers:
            await sub.close()
        out.put({"frames": [(s.index, s.sim.id, s.frames) for s in subscribers],
                 "errors": [s.error for s in subscribers if s.error]})

    asyncio.run(main())


def probe_process(sim: Sim, opts: LoadOptions, runner_url: str, functions_url: str,
                  secret: str, seconds: float, out: Any) -> None:
    """One more runner in a process of its own, as a real runner is (its own pool and LISTEN
    connection), asking a checkpoint before every step, answered through the checkpoint
    function's handler in this process too (the function is its own Lambda in production):
    approval request -> the runner's next action committed, beside the phase's traffic."""
    _child_setup(secret)
    from dataclasses import replace

    from aef.db import Database, set_database

    runner_db = Database(runner_url, min_size=0, max_size=2)
    api_db = Database(functions_url, min_size=0, max_size=2)
    set_database(api_db)
    try:
        samples = Samples()
        responder = Responder(Api(), samples, opts.answer_ms, threads=1)
        responder.start()
        waker = Waker(runner_url, [sim])
        waker.start()
        probe = SimRunner(sim, runner_db, replace(opts, checkpoint_every=1),
                          time.monotonic() + seconds, samples, {}, responder,
                          waker.by_sim[sim.id])
        probe.run()
        responder.stop()
        waker.stop()
        out.put({"values": dict(samples.values), "seqs": probe.seqs, "error": probe.error})
    except Exception as exc:
        out.put({"values": {}, "seqs": [], "error": f"{type(exc).__name__}: {exc}"})
    finally:
        runner_db.close()
        api_db.close()


def _get(q: Any, proc: Any, what: str, timeout: float) -> Any:
    """A child's answer, or an error saying the child died or hung."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the {what} process exited ({proc.exitcode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {what} process did not answer in time") from None


# Phases -----------------------------------------------------------------------------------------
@dataclass
class PhaseResult:
    name: str
    executions: int
    wall_seconds: float
    events: int
    steps: int
    samples: Samples = field(repr=False)
    runner_errors: list[str] = field(default_factory=list)
    probe: dict[str, Any] | None = None  # the checkpoint probe's samples (probe_process)

    @property
    def events_per_second(self) -> float:
        return self.events / self.wall_seconds if self.wall_seconds else 0.0


def run_runners(sims: list[Sim], db: Any, api: Api, opts: LoadOptions, seconds: float,
                sent: dict[tuple[str, int], float], name: str,
                probe: tuple[Sim, str, str, str] | None = None
                ) -> tuple[PhaseResult, list[SimRunner]]:
    """The phase's runners; with `probe` (its execution, the runner and functions logins, the
    JWT secret) also the checkpoint probe's process (`probe_process`) for as long."""
    import multiprocessing

    samples = Samples()
    probed: Any = None
    if probe is not None:
        mp = multiprocessing.get_context("spawn")
        probe_out = mp.Queue()
        probed = mp.Process(target=probe_process, name="load-probe", args=(
            probe[0], opts, probe[1], probe[2], probe[3], seconds, probe_out))
        probed.start()
    responder = Responder(api, samples, opts.answer_ms)
    responder.start()
    waker = Waker(db.url, sims)
    waker.start()
    deadline = time.monotonic() + seconds
    runners = [SimRunner(sim, db, opts, deadline, samples, sent, responder,
                         waker.by_sim[sim.id]) for sim in sims]
    started = time.monotonic()
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    wall = time.monotonic() - started
    responder.stop()
    waker.stop()
    result = PhaseResult(name, len(runners), wall, sum(len(r.seqs) for r in runners),
                         sum(r.steps for r in runners), samples,
                         [r.error for r in runners if r.error])
    if probed is not None:
        got = _get(probe_out, probed, "checkpoint probe", 120)
        probed.join(30)
        result.probe = {"resume": got["values"].get("checkpoint.resume", []),
                        "handler": got["values"].get("api.checkpoint", []),
                        "seqs": got["seqs"], "error": got["error"]}
    return result, runners


@dataclass
class LoadReport:
    options: dict[str, Any]
    baseline: dict[str, Any] | None
    loaded: dict[str, Any]
    ratios: dict[str, float]
    api: dict[str, Any]
    realtime: dict[str, Any]
    checks: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.checks["ok"])


def phase_summary(result: PhaseResult) -> dict[str, Any]:
    s = result.samples
    return {"executions": result.executions, "wallSeconds": round(result.wall_seconds, 2),
            "events": result.events, "steps": result.steps,
            "eventsPerSecond": round(result.events_per_second, 1),
            "stateTx": s.summary("tx.state"), "heartbeat": s.summary("tx.heartbeat"),
            "poll": s.summary("tx.poll"), "claim": s.summary("tx.claim"),
            "checkpoints": s.counts.get("checkpoints", 0),
            "checkpointWait": s.summary("checkpoint.wait"),
            "checkpointResume": s.summary("checkpoint.resume"),
            "apiCheckpoint": s.summary("api.checkpoint"),
            "apiCheckpointStatuses": {k.rsplit(".", 1)[1]: v for k, v in s.counts.items()
                                      if k.startswith("api.checkpoint.")},
            "runnerErrors": result.runner_errors,
            "checkpointProbe": probe_summary(result.probe)}


def probe_summary(probe: dict[str, Any] | None) -> dict[str, Any] | None:
    if probe is None:
        return None
    resume, handler = probe["resume"], probe["handler"]
    return {"n": len(resume), "p50": round(percentile(resume, 0.50), 2),
            "p95": round(percentile(resume, 0.95), 2), "max": round(max(resume, default=0), 2),
            "handlerP50": round(percentile(handler, 0.50), 2), "error": probe["error"]}


def last_seqs(database_url: str, sims: list[Sim]) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return {str(i): int(n) for i, n in conn.execute(
            "select id, last_seq from aef_executions where id = any(%s::uuid[])",
            ([s.id for s in sims],))}


def outbox_checks(database_url: str, sims: list[Sim], runners: list[SimRunner]
                  ) -> dict[str, Any]:
    """Gapless seq per execution, runner seqs all present, broadcast exactly once."""
    import psycopg
    from psycopg.rows import dict_row

    ids = [s.id for s in sims]
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        outbox = {str(r["execution_id"]): list(r["seqs"]) for r in conn.execute(
            "select execution_id, array_agg(seq order by seq) as seqs from aef_events"
            " where execution_id = any(%s::uuid[]) group by execution_id", (ids,))}
        broadcast = {r["topic"]: list(r["seqs"]) for r in conn.execute(
            "select topic, array_agg((payload->>'seq')::int order by (payload->>'seq')::int)"
            " as seqs from realtime.messages where topic = any(%s) and extension = 'broadcast'"
            " group by topic", ([s.topic for s in sims],))}
    last = last_seqs(database_url, sims)
    gapless = sum(outbox.get(i, []) == list(range(1, last[i] + 1)) for i in ids)
    once = sum(broadcast.get(s.topic, []) == outbox.get(s.id, []) for s in sims)
    lost = sum(len(set(r.seqs) - set(outbox.get(r.sim.id, []))) for r in runners)
    duplicated = sum(len(r.seqs) - len(set(r.seqs)) for r in runners)
    return {"executions": len(ids), "gapless": gapless, "broadcastOnce": once,
            "lostRunnerEvents": lost, "duplicateRunnerSeqs": duplicated,
            "events": sum(len(v) for v in outbox.values())}


def run_load(opts: LoadOptions, *, database_url: str | None = None,
             admin_url: str | None = None, secret: str | None = None,
             quiet: bool = False, functions_url: str | None = None,
             runner_url: str | None = None) -> LoadReport:
    """Both phases; a throwaway database unless `database_url` names one (then kept).

    `functions_url` / `runner_url` are the logins the API and the runners use (production's
    aef_functions / aef_runner_login); both default to `database_url`, which also seeds
    auth.users and reads the outcome.
    """
    import multiprocessing

    from aef.db import Database, get_database, set_database
    from aef.settings import get_settings
    from local.schema import apply_schema, create_database, drop_database

    settings = get_settings()
    if secret is None:
        if settings.jwt_secret is None:
            raise RuntimeError("the API needs AEF_JWT_SECRET (HS256) for the benchmark tokens")
        secret = settings.jwt_secret.get_secret_value()
    admin = admin_url or settings.database_url
    name = None
    if database_url is None:
        name = f"aef_load_{uuid.uuid4().hex[:10]}"
        database_url = create_database(admin, name)
        apply_schema(database_url)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    mp = multiprocessing.get_context("spawn")
    functions_url = functions_url or database_url
    runner_db = Database(runner_url or database_url, min_size=0,
                         max_size=opts.runner_connections)
    api_db = Database(functions_url, min_size=0, max_size=4)  # the responder's function
    previous = get_database()
    set_database(api_db)
    children: list[Any] = []
    def probe(into: list[Sim]) -> tuple[Sim, str, str, str] | None:
        """A fresh execution for the phase's checkpoint probe (its seqs are checked too)."""
        if not opts.probe:
            return None
        sim = create_executions(api_db, 1, secret, database_url)[0]
        into.append(sim)
        return sim, runner_url or database_url, functions_url, secret

    try:
        api = Api()
        baseline: PhaseResult | None = None
        all_sims: list[Sim] = []
        all_runners: list[SimRunner] = []
        if opts.baseline_seconds > 0:
            sims = create_executions(api_db, opts.executions, secret, database_url)
            say(f"baseline: {len(sims)} executions, runners only, {opts.baseline_seconds:g} s")
            baseline, runners = run_runners(sims, runner_db, api, opts, opts.baseline_seconds,
                                            {}, "baseline", probe(all_sims))
            all_sims += sims
            all_runners += runners

        sims = create_executions(api_db, opts.executions, secret, database_url)
        sent: dict[tuple[str, int], float] = {}
        with realtime_process(database_url, secret) as ws_url:
            ready, expect, frames_out = mp.Queue(), mp.Queue(), mp.Queue()
            clients = mp.Process(target=clients_process, name="load-clients", args=(
                sims, opts.clients, ws_url, secret, opts.drain_seconds, ready, expect,
                frames_out))
            clients.start()
            children.append(clients)
            joined = _get(ready, clients, "clients", 120)
            if isinstance(joined, dict):
                raise RuntimeError(joined["error"])
            base = last_seqs(database_url, sims)
            stop_watchers, watch_out = mp.Event(), mp.Queue()
            watchers = mp.Process(target=watchers_process, name="load-watchers", args=(
                sims, opts, functions_url, secret, stop_watchers, watch_out))
            watchers.start()
            children.append(watchers)
            say(f"loaded: {len(sims)} executions, {opts.clients} clients joined in "
                f"{joined:.1f} s; runners + watchers, {opts.seconds:g} s")
            loaded, runners = run_runners(sims, runner_db, api, opts, opts.seconds, sent,
                                          "loaded", probe(all_sims))
            final = last_seqs(database_url, sims)
            expect.put({i: final[i] - base[i] for i in final})
            delivered = _get(frames_out, clients, "clients", opts.drain_seconds + 60)
            watched = _get(watch_out, watchers, "watchers", opts.drain_seconds + 60)
            stop_watchers.set()
            for child in children:
                child.join(30)
        all_sims += sims
        all_runners += runners
        checks = outbox_checks(database_url, all_sims, all_runners)
        realtime = fanout_summary(delivered, base, final, sent)
        api_summary = api_reads(watched)
        checks.update({
            "clientsComplete": realtime["clientsComplete"],
            "watcherGaps": api_summary["watcherGaps"],
            "watchersComplete": api_summary["watchersComplete"],
            "runnerErrors": sum(1 for r in all_runners if r.error) + sum(
                1 for phase in (baseline, loaded)
                if phase and phase.probe and phase.probe["error"]),
        })
        checks["ok"] = (checks["gapless"] == checks["executions"]
                        and checks["broadcastOnce"] == checks["executions"]
                        and checks["lostRunnerEvents"] == 0
                        and checks["duplicateRunnerSeqs"] == 0
                        and realtime["clientsComplete"] == opts.clients
                        and api_summary["watcherGaps"] == 0
                        and api_summary["watchersComplete"] == len(sims)
                        and api_summary["errors"] == 0
                        and checks["runnerErrors"] == 0)
        loaded_summary = phase_summary(loaded)
        baseline_summary = phase_summary(baseline) if baseline else None
        ratios: dict[str, float] = {}
        if baseline_summary:
            ratios = {
                "eventsPerSecond": ratio(loaded_summary["eventsPerSecond"],
                                         baseline_summary["eventsPerSecond"]),
                "stateTxP50": ratio(loaded_summary["stateTx"]["p50"],
                                    baseline_summary["stateTx"]["p50"]),
                "stateTxP99": ratio(loaded_summary["stateTx"]["p99"],
                                    baseline_summary["stateTx"]["p99"]),
            }
        return LoadReport(asdict(opts), baseline_summary, loaded_summary, ratios, api_summary,
                          realtime, checks)
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join(10)
        set_database(previous)
        runner_db.close()
        api_db.close()
        if name is not None:
            drop_database(admin, name)


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


def api_reads(watched: dict[str, Any]) -> dict[str, Any]:
    samples = Samples()
    samples.values.update(watched["values"])
    live = samples.values.get("api.live", [])
    logs = samples.values.get("api.logs", [])
    statuses = {k: v for k, v in watched["counts"].items()
                if k.startswith(("api.live.", "api.logs."))}
    errors = sum(v for k, v in statuses.items() if not k.endswith(".200"))
    wall = watched["wall"]
    watchers = watched["watchers"]
    return {"reads": len(live) + len(logs),
            "readsPerSecond": round((len(live) + len(logs)) / wall, 1) if wall else 0.0,
            "live": samples.summary("api.live"), "logs": samples.summary("api.logs"),
            "statuses": statuses, "errors": errors,
            "watcherGaps": sum(w["gaps"] for w in watchers),
            "watchersComplete": sum(bool(w["complete"]) for w in watchers),
            "checkpointsSeen": sum(w["checkpointsSeen"] for w in watchers),
            "logOrderErrors": sum(w["logOrderErrors"] for w in watchers),
            "watcherErrors": [w["error"] for w in watchers if w["error"]]}


def fanout_summary(delivered: dict[str, Any], base: dict[str, int], final: dict[str, int],
                   sent: dict[tuple[str, int], float]) -> dict[str, Any]:
    latencies: list[float] = []
    complete = missing = duplicates = out_of_order = 0
    for _index, execution_id, frames in delivered["frames"]:
        seqs = [seq for seq, _ in frames]
        expected = list(range(base[execution_id] + 1, final[execution_id] + 1))
        if seqs == expected:
            complete += 1
        missing += len(set(expected) - set(seqs))
        duplicates += len(seqs) - len(set(seqs))
        out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        for seq, at in frames:
            t0 = sent.get((execution_id, seq))
            if t0 is not None:
                latencies.append((at - t0) * 1000)
    return {"clients": len(delivered["frames"]), "clientsComplete": complete,
            "frames": sum(len(f) for _, _, f in delivered["frames"]), "missing": missing,
            "duplicates": duplicates, "outOfOrder": out_of_order,
            "deliveryMs": {"n": len(latencies), "p50": round(percentile(latencies, 0.5), 2),
                           "p99": round(percentile(latencies, 0.99), 2)},
            "clientErrors": delivered["errors"]}


def print_report(report: LoadReport) -> None:
    o = report.options
    print(f"\nAEF load: {o['executions']} executions, {o['clients']} Realtime clients, "
          f"{o['seconds']:g} s (baseline {o['baseline_seconds']:g} s), step {o['step_ms']:g} ms, "
          f"checkpoint every {o['checkpoint_every']} steps")
    print(f"{'phase':<9} {'events':>7} {'events/s':>9} {'state tx p50':>13} {'p99':>8} "
          f"{'heartbeat p99':>14} {'ckpt wait p50':>14}")
    for name, phase in (("baseline", report.baseline), ("loaded", report.loaded)):
        if phase is None:
            continue
        print(f"{name:<9} {phase['events']:>7} {phase['eventsPerSecond']:>9.1f} "
              f"{phase['stateTx']['p50']:>10.2f} ms {phase['stateTx']['p99']:>5.2f} ms "
              f"{phase['heartbeat']['p99']:>11.2f} ms {phase['checkpointWait']['p50']:>11.1f} ms")
    resume = "  ".join(
        f"{name} p50 {phase['checkpointResume']['p50']} ms p95 {phase['checkpointResume']['p95']}"
        f" ms (n {phase['checkpointResume']['n']})"
        for name, phase in (("baseline", report.baseline), ("loaded", report.loaded)) if phase)
    print(f"checkpoint approval -> runner's next action, the 50 runners: {resume}")
    probes = "  ".join(
        f"{name} p50 {phase['checkpointProbe']['p50']} ms p95 {phase['checkpointProbe']['p95']}"
        f" ms (n {phase['checkpointProbe']['n']}, handler p50 "
        f"{phase['checkpointProbe']['handlerP50']} ms)"
        for name, phase in (("baseline", report.baseline), ("loaded", report.loaded))
        if phase and phase["checkpointProbe"])
    if probes:
        print(f"checkpoint approval -> next action, the probe runner (own process): {probes}")
    if report.ratios:
        r = report.ratios
        print(f"loaded/baseline: events/s x{r['eventsPerSecond']}, state tx p50 "
              f"x{r['stateTxP50']}, p99 x{r['stateTxP99']}")
    a = report.api
    print(f"API reads: {a['reads']} ({a['readsPerSecond']}/s)  /live p50 {a['live']['p50']} ms "
          f"p99 {a['live']['p99']} ms  /logs p50 {a['logs']['p50']} ms p99 {a['logs']['p99']} ms"
          f"  non-200: {a['errors']}  checkpoints answered: "
          f"{report.loaded['apiCheckpointStatuses']}")
    rt = report.realtime
    print(f"Realtime: {rt['clients']} clients, {rt['frames']} frames, delivery p50 "
          f"{rt['deliveryMs']['p50']} ms p99 {rt['deliveryMs']['p99']} ms, complete "
          f"{rt['clientsComplete']}/{rt['clients']}, missing {rt['missing']}, duplicates "
          f"{rt['duplicates']}, out of order {rt['outOfOrder']}")
    c = report.checks
    print(f"Checks: seq gapless {c['gapless']}/{c['executions']}, broadcast exactly once "
          f"{c['broadcastOnce']}/{c['executions']}, lost runner events "
          f"{c['lostRunnerEvents']}, watcher gaps {c['watcherGaps']}, watchers complete "
          f"{c['watchersComplete']}, runner errors {c['runnerErrors']} -> "
          f"{'OK' if c['ok'] else 'FAILED'}")
    print("JSON " + json.dumps(asdict(report), default=str))


def main() -> int:
    defaults = LoadOptions()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--executions", type=int, default=defaults.executions)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--baseline-seconds", type=float, default=None,
                        help="default: min(20, --seconds); 0 skips the baseline")
    parser.add_argument("--step-ms", type=float, default=defaults.step_ms)
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--answer-ms", type=float, default=defaults.answer_ms)
    parser.add_argument("--poll-ms", type=float, default=defaults.poll_ms)
    parser.add_argument("--logs-every", type=int, default=defaults.logs_every)
    parser.add_argument("--heartbeat-seconds", type=float, default=defaults.heartbeat_seconds)
    parser.add_argument("--runner-connections", type=int, default=defaults.runner_connections)
    parser.add_argument("--api-connections", type=int, default=defaults.api_connections)
    args = parser.parse_args()
    opts = LoadOptions(
        executions=args.executions, clients=args.clients, seconds=args.seconds,
        baseline_seconds=(min(defaults.baseline_seconds, args.seconds)
                          if args.baseline_seconds is None else args.baseline_seconds),
        step_ms=args.step_ms, checkpoint_every=args.checkpoint_every,
        answer_ms=args.answer_ms, poll_ms=args.poll_ms, logs_every=args.logs_every,
        heartbeat_seconds=args.heartbeat_seconds, runner_connections=args.runner_connections,
        api_connections=args.api_connections)
    # The API's settings, read on first use: our HS256 secret, no rate limit in the way of a
    # watcher polling every second (the defaults allow 20 reads/s per user anyway).
    os.environ.setdefault("AEF_JWT_SECRET", DEFAULT_SECRET)
    os.environ.setdefault("AEF_LAUNCHER", "ecs")
    import logging

    logging.getLogger("aef").setLevel(logging.WARNING)
    report = run_load(opts)
    print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
