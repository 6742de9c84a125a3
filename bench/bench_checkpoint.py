"""Checkpoint answer -> the runner's next action: LISTEN/NOTIFY against 1-second polling.

A workflow of --steps task steps, each with a `before_step` checkpoint, runs in the real
runner engine (in this process, on its own thread and event loop) against a local page. A
driver plays the person: it waits for each pending checkpoint, thinks for a random 0-1 s (so
the answers land at every phase of the runner's polling cycle, as a person's would), then
approves it through the checkpoint function's Mangum handler (API Gateway v2 event, HS256 JWT).

    t0 = just before the handler is called (the approval request)
    t1 = when the step's row turns `running`: the runner's first write after the answer

t1 is observed by the driver on its own connection, polling the step's row every 2 ms (the
local Realtime server polls realtime.messages now; no NOTIFY per event to wake the driver).
Two runners, interleaved run by run so drift hits both alike:

(a) the real runner: LISTEN on the execution's wake channel (the answer's trigger NOTIFYs)
    + 1 s backstop;
(b) the baseline: the same runner with LISTEN off (`Control.listen = False`), so it learns of
    the answer only when its once-a-second check reads the checkpoint row.

Prints p50/p95 of t1 - t0 for both and the ratio (b)/(a), the database's own clock for the same
interval (step `started_at` - checkpoint `responded_at`), and one JSON line for machines.

    .venv/bin/python bench/bench_checkpoint.py [--steps 20] [--runs 2] [--seed 7]

Needs PostgreSQL (DATABASE_URL or 127.0.0.1:5432, a throwaway database is created and dropped)
and Chromium at /usr/bin/chromium (or AEF_CHROMIUM_PATH). About 2 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-checkpoint-secret-0123456789-abcdef"
os.environ.update({
    "AEF_JWT_SECRET": SECRET, "AEF_WRITE_RATE_LIMIT_CAPACITY": "1000000",
    "AEF_RATE_LIMIT_CAPACITY": "1000000", "AEF_READ_RATE_LIMIT_CAPACITY": "1000000",
})
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import jwt  # noqa: E402
import psycopg  # noqa: E402

from aef.db import Database, set_database  # noqa: E402
from aef.settings import Settings, get_settings  # noqa: E402
from local.schema import apply_schema, create_database, drop_database  # noqa: E402
from runner.engine import Engine  # noqa: E402
from runner.flow import Outcome  # noqa: E402
from tests.apigw import apigw_event, invoke  # noqa: E402
from tests.runner.helpers import Execution, before_step, make_execution, task  # noqa: E402
from tests.runner.pages import serve_site  # noqa: E402

BUCKET = "aef-bench-checkpoint"
BACKSTOP_SECONDS = 0.002  # the driver's own poll of the step's row
WAIT_SECONDS = 30.0  # for a checkpoint to appear / a step to start, before giving up


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plan(base: str, steps: int) -> list[dict[str, Any]]:
    """K light task steps, each asked before it runs (a long timeout: the driver answers)."""
    return [task(f"step-{i}", [{"type": "navigate", "url": f"{base}/page?n={i}"},
                               {"type": "click", "selector": "#go"}],
                 checkpoint=before_step(f"Run step {i}?", timeout=600))
            for i in range(steps)]


def bearer(execution: Execution) -> str:
    now = int(time.time())
    claims = {**execution.user.claims, "iat": now, "exp": now + 3600,
              "session_id": str(uuid.uuid4())}
    return jwt.encode(claims, SECRET, algorithm="HS256")


# --- the runner, on its own thread and loop (as its own process would be) ----------------------
@dataclass
class RunnerThread:
    """`python -m runner` minus the process: one Engine, `asyncio.run` on a thread."""

    engine: Engine
    outcome: Outcome | None = None
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._main, name="aef-bench-runner", daemon=True)

    def _main(self) -> None:
        try:
            self.outcome = asyncio.run(self.engine.run())
        except BaseException as exc:  # reported by the driver
            self.error = exc

    def check(self) -> None:
        """Raise if the runner ended before the driver expected it to."""
        if not self.thread.is_alive():
            raise RuntimeError(f"the runner ended early: {self.error or self.outcome}")


# --- the person's side --------------------------------------------------------------------------
class Driver:
    """Waits for checkpoints, approves them through the handler, times the runner's answer."""

    def __init__(self, url: str) -> None:
        from functions.checkpoint.app import handler

        self.handler = handler
        self.reads = psycopg.connect(url, autocommit=True)  # postgres: sees every row

    def close(self) -> None:
        self.reads.close()

    def _nap(self) -> None:
        time.sleep(BACKSTOP_SECONDS)

    def pending(self, runner: RunnerThread, execution_id: str, step_id: str) -> str:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            row = self.reads.execute(
                "select id from aef_checkpoints where execution_id = %s and step_id = %s"
                " and status = 'pending'", (execution_id, step_id)).fetchone()
            if row is not None:
                return str(row[0])
            runner.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no checkpoint for {step_id} within {WAIT_SECONDS:g} s")
            self._nap()

    def approve(self, token: str, checkpoint_id: str) -> None:
        status, _, body = invoke(self.handler, apigw_event(
            "POST", f"/api/aef/checkpoint/{checkpoint_id}",
            headers={"authorization": f"Bearer {token}"}, body={"response": "approve"}))
        if status != 200 or body.get("decision") != "approved":
            raise RuntimeError(f"the approval failed: {status} {body}")

    def started(self, runner: RunnerThread, execution_id: str, step_id: str) -> float:
        """perf_counter() at which the step's row is seen past `waiting_checkpoint`."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            row = self.reads.execute(
                "select status from aef_execution_steps where execution_id = %s"
                " and step_id = %s and iteration = 0", (execution_id, step_id)).fetchone()
            if row is not None and row[0] != "waiting_checkpoint":
                return time.perf_counter()
            runner.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{step_id} did not start within {WAIT_SECONDS:g} s")
            self._nap()

    def warm(self, token: str) -> None:
        """One call on an unknown id (404): the app's first-request work is not timed."""
        invoke(self.handler, apigw_event(
            "POST", f"/api/aef/checkpoint/{uuid.uuid4()}",
            headers={"authorization": f"Bearer {token}"}, body={"response": "approve"}))


@dataclass
class Sample:
    latency_ms: float  # t1 - t0
    handler_ms: float  # t0 -> the handler returned (the answer is committed by then)
    listening: bool


def one_run(driver: Driver, db: Database, runner_db: Database, settings: Settings, base: str,
            steps: int, listen: bool, rng: random.Random) -> tuple[list[Sample], list[float]]:
    """One execution of the K-step workflow; returns the samples and the database-clock ones."""
    from aef.screenshots import ScreenshotStore

    execution = make_execution(db, plan(base, steps))
    token = bearer(execution)
    engine = Engine(settings, runner_db, execution.id, execution.token,
                    screenshots=ScreenshotStore(settings))
    engine.control.listen = listen
    runner = RunnerThread(engine)
    runner.thread.start()
    samples: list[Sample] = []
    try:
        for i in range(steps):
            step_id = f"step-{i}"
            checkpoint_id = driver.pending(runner, execution.id, step_id)
            time.sleep(rng.uniform(0.0, 1.0))  # the person reads the question
            listening = engine.control.listening
            t0 = time.perf_counter()
            driver.approve(token, checkpoint_id)
            answered = time.perf_counter()
            t1 = driver.started(runner, execution.id, step_id)
            samples.append(Sample((t1 - t0) * 1000, (answered - t0) * 1000, listening))
    finally:
        runner.thread.join(timeout=120)
    if runner.error is not None or runner.outcome is None:
        raise RuntimeError(f"the runner failed: {runner.error!r}")
    if runner.outcome.status != "completed":
        raise RuntimeError(f"the run ended {runner.outcome.status}: {runner.outcome.message}")
    rows = driver.reads.execute(
        "select extract(epoch from s.started_at - c.responded_at) * 1000"
        " from aef_execution_steps s join aef_checkpoints c using (execution_id, step_id,"
        " iteration) where s.execution_id = %s and s.status = 'completed'",
        (execution.id,)).fetchall()
    if len(rows) != steps:
        raise RuntimeError(f"{len(rows)} of {steps} steps completed")
    return samples, [float(r[0]) for r in rows]


@contextmanager
def s3_server() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


@contextmanager
def throwaway_database(admin: str) -> Iterator[str]:
    name = f"aef_bench_cp_{uuid.uuid4().hex[:8]}"
    url = create_database(admin, name)
    try:
        apply_schema(url)
        yield url
    finally:
        drop_database(admin, name)


def summarize(samples: list[Sample], db_clock: list[float]) -> dict[str, float]:
    latencies = [s.latency_ms for s in samples]
    after = [s.latency_ms - s.handler_ms for s in samples]
    return {
        "samples": len(samples),
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 0.95),
        "max_ms": max(latencies),
        "db_clock_p50_ms": statistics.median(db_clock),
        "db_clock_p95_ms": percentile(db_clock, 0.95),
        "handler_p50_ms": statistics.median(s.handler_ms for s in samples),
        "after_response_p50_ms": statistics.median(after),
        "after_response_p95_ms": percentile(after, 0.95),
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    rng = random.Random(args.seed)
    logging.getLogger("aef").setLevel(logging.WARNING)  # a line per step and per request
    with throwaway_database(admin) as url, s3_server() as endpoint, serve_site() as site:
        api_db = Database(url, min_size=1, max_size=2)  # the checkpoint function's pool
        runner_db = Database(url, min_size=1, max_size=6)  # as runner/__main__.py sizes it
        set_database(api_db)
        settings = get_settings().model_copy(update={
            "database_url": url, "allow_loopback": True, "headless": True,
            "chromium_path": get_settings().chromium_path or "/usr/bin/chromium",
            "s3_endpoint_url": endpoint, "screenshot_bucket": BUCKET,
            "work_dir": f"/tmp/aef-bench-checkpoint-{uuid.uuid4().hex[:8]}"})
        driver = Driver(url)
        try:
            driver.warm(bearer(make_execution(api_db, [])))
            got: dict[bool, tuple[list[Sample], list[float]]] = {True: ([], []), False: ([], [])}
            for _ in range(args.runs):
                for listen in (True, False):
                    samples, db_clock = one_run(driver, api_db, runner_db, settings,
                                                site.base_url, args.steps, listen, rng)
                    got[listen][0].extend(samples)
                    got[listen][1].extend(db_clock)
        finally:
            driver.close()
            set_database(None)
            api_db.close()
            runner_db.close()
    unheard = sum(not s.listening for s in got[True][0])
    if unheard:
        raise RuntimeError(f"the LISTEN runner was not listening at {unheard} approvals")
    return {"steps": args.steps, "runs": args.runs,
            "listen": summarize(*got[True]), "polling": summarize(*got[False])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="checkpointed steps per run")
    parser.add_argument("--runs", type=int, default=2, help="runs per runner, interleaved")
    parser.add_argument("--seed", type=int, default=7, help="for the think times")
    args = parser.parse_args()
    if args.steps < 1 or args.runs < 1:
        parser.error("--steps and --runs must be at least 1")
    result = bench(args)
    a, b = result["listen"], result["polling"]
    result["p50_ratio"] = b["p50_ms"] / a["p50_ms"]
    result["p95_ratio"] = b["p95_ms"] / a["p95_ms"]
    print(f"checkpoint approval -> step running, {a['samples']} approvals each"
          f" ({args.runs} runs x {args.steps} steps, interleaved)")
    for label, r in (("(a) LISTEN/NOTIFY runner ", a), ("(b) 1 s polling baseline ", b)):
        print(f"  {label}: p50 {r['p50_ms']:7.1f} ms, p95 {r['p95_ms']:7.1f} ms,"
              f" max {r['max_ms']:7.1f} ms   (database clock p50 {r['db_clock_p50_ms']:.1f},"
              f" p95 {r['db_clock_p95_ms']:.1f})")
        print(f"  {'':25}  of which the handler p50 {r['handler_p50_ms']:.1f} ms; after its"
              f" response p50 {r['after_response_p50_ms']:.1f} ms,"
              f" p95 {r['after_response_p95_ms']:.1f} ms")
    print(f"  ratio (b)/(a)            : p50 {result['p50_ratio']:.1f}x,"
          f" p95 {result['p95_ratio']:.1f}x")
    print(json.dumps({"bench": "checkpoint", **result}))


if __name__ == "__main__":
    main()
