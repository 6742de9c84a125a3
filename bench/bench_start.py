"""Start latency: "execute" -> first step `running`, (a) a fresh runner process per execution
(today's local path, `LocalLauncher`) vs (b) a warm pool worker (`PoolLauncher` dispatching to
`python -m runner --pool`). Then the memory and CPU of one execution in a worker running
N = 1, 4, 8 at once (the worker and all its browsers), so N can be chosen from numbers
(docs/scaling.md).

Latency: from a database clock reading taken just before `launch()` to the first step row's
`started_at`; p50/p95 over --n executions of each path, interleaved so drift hits both alike.
Executions arrive one at a time, spaced so the worker has relaunched its warm browser. The
last line is JSON: pool_p95_ms, fresh_p95_ms, ratio (pool / fresh, p95), and the memory.

    .venv/bin/python bench/bench_start.py [--n 20] [--slots 1,4,8]

Needs PostgreSQL (DATABASE_URL or 127.0.0.1:5432, a throwaway database is created and
dropped) and Chromium at /usr/bin/chromium (or AEF_CHROMIUM_PATH).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_runner import BUCKET, _free_port, _new_execution, _serve  # noqa: E402

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

WARM_SECONDS = 2.5  # between arrivals: the worker relaunches its warm browser meanwhile


def document(base: str, steps: int, wait_ms: int) -> dict[str, Any]:
    plan = [{"id": f"s{i}", "label": f"Step {i}", "kind": "task", "method": "automated",
             "actions": [{"type": "navigate", "url": f"{base}/page?n={i}"},
                         {"type": "fill", "selector": "#note", "value": f"note {i}"},
                         {"type": "click", "selector": "#go"},
                         {"type": "wait", "timeoutMs": wait_ms}]} for i in range(steps)]
    return {"meta": {"title": "bench"},
            "aef": {"config": {"stepTimeout": 30}, "plan": plan,
                    "transformedAt": "2026-01-01T00:00:00Z", "transformedBy": "bench",
                    "version": "1.0"}}


def db_now(db: Any) -> Any:
    with db.as_service() as conn:
        return conn.execute("select clock_timestamp() as t").fetchone()["t"]


def wait_for(probe: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def first_step_started(db: Any, execution_id: str) -> Any:
    with db.as_service() as conn:
        row = conn.execute("select min(started_at) as t from aef_execution_steps"
                           " where execution_id = %s", (execution_id,)).fetchone()
    return row["t"]


def status(db: Any, execution_id: str) -> str:
    with db.as_service() as conn:
        return str(conn.execute("select status from aef_executions where id = %s",
                                (execution_id,)).fetchone()["status"])


def start_latency(db: Any, launcher: Any, doc: dict[str, Any]) -> float:
    """ms from just before launch() to the first step `running`; waits for the end."""
    execution_id, token = _new_execution(db, doc)
    t0 = db_now(db)
    launcher.launch(execution_id, token)
    started = wait_for(lambda: first_step_started(db, execution_id), 120, "the first step")
    wait_for(lambda: status(db, execution_id) in ("completed", "failed", "cancelled"), 120,
             "the end")
    if status(db, execution_id) != "completed":
        raise RuntimeError(f"execution {execution_id} did not complete")
    return (started - t0).total_seconds() * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- memory and CPU of a process tree ------------------------------------------------------------
def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split between their users): no double counting of
    the Chromium binary shared by several browsers, which summing RSS would do."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def sample(root: int) -> tuple[int, dict[int, int]]:
    pids = _tree(root)
    return sum(_pss_kb(pid) for pid in pids), {pid: _cpu_ticks(pid) for pid in pids}


def worker_env(settings: Any, slots: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEF_")}
    env.update({"DATABASE_URL": settings.database_url, "AEF_POOL_SLOTS": str(slots),
                "AEF_ALLOW_LOOPBACK": "true", "AEF_CHROMIUM_PATH": settings.chromium_path,
                "AEF_S3_ENDPOINT_URL": settings.s3_endpoint_url,
                "AEF_SCREENSHOT_BUCKET": BUCKET, "AEF_WORK_DIR": settings.work_dir,
                "AEF_HEARTBEAT_SECONDS": "1", "AEF_POOL_DRAIN_SECONDS": "0"})
    return env


def start_worker(db: Any, settings: Any, slots: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "--pool"], cwd=ROOT,
                                env=worker_env(settings, slots), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def registered() -> bool:
        with db.as_service() as conn:
            return int(conn.execute("select total_slots from aef_private.pool_demand()")
                       .fetchone()["total_slots"]) >= slots
    wait_for(registered, 60, "the pool worker to register")
    time.sleep(WARM_SECONDS)  # its warm browser
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    from runner.browser import kill_process_tree

    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        kill_process_tree(proc.pid)
        proc.wait(10)


def memory(db: Any, settings: Any, launcher: Any, base: str, slots: int,
           log_path: Path) -> dict[str, float]:
    """Peak PSS of the worker and its browsers with `slots` executions running at once."""
    worker = start_worker(db, settings, slots, log_path)
    try:
        idle_kb, _ = sample(worker.pid)
        doc = document(base, 6, 300)
        ids = []
        for _ in range(slots):
            execution_id, _ = _new_execution(db, doc)
            if not launcher.dispatch(execution_id):
                raise RuntimeError("the pool refused an execution within its slots")
            ids.append(execution_id)
        peak_kb, first = 0, sample(worker.pid)[1]
        cpu: dict[int, int] = dict(first)
        started = time.monotonic()
        while any(status(db, e) not in ("completed", "failed", "cancelled") for e in ids):
            kb, ticks = sample(worker.pid)
            peak_kb = max(peak_kb, kb)
            for pid, t in ticks.items():
                cpu[pid] = max(cpu.get(pid, 0), t)
            time.sleep(0.2)
        wall = time.monotonic() - started
        if any(status(db, e) != "completed" for e in ids):
            raise RuntimeError("an execution of the memory run did not complete")
        used = sum(cpu.values()) - sum(first.values())
        cpu_seconds = used / os.sysconf("SC_CLK_TCK")
        return {"slots": slots, "idle_mb": idle_kb / 1024, "peak_mb": peak_kb / 1024,
                "per_execution_mb": peak_kb / 1024 / slots,
                "vcpu_per_execution": cpu_seconds / wall / slots}
    finally:
        stop_worker(worker)


def bench(args: argparse.Namespace) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from aef.db import Database
    from aef.launcher import LocalLauncher, PoolLauncher
    from aef.settings import get_settings
    from local.schema import apply_schema, create_database, drop_database

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"aef_bench_{uuid.uuid4().hex[:8]}"
    url = create_database(admin, name)
    apply_schema(url)
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=BUCKET)
    server, base = _serve()
    db = Database(url, min_size=1, max_size=4)
    work = Path(f"/tmp/aef-bench-{name}")  # a throwaway folder of this run
    settings = get_settings().model_copy(update={
        "database_url": url, "allow_loopback": True, "headless": True,
        "chromium_path": get_settings().chromium_path or "/usr/bin/chromium",
        "s3_endpoint_url": endpoint, "screenshot_bucket": BUCKET, "work_dir": str(work)})
    os.environ.update({k: v for k, v in worker_env(settings, 1).items()
                       if k.startswith("AEF_") and k != "AEF_POOL_SLOTS"})
    work.mkdir(parents=True, exist_ok=True)
    fresh = LocalLauncher(settings, log_dir=work / "logs")
    pool = PoolLauncher(fresh, database=lambda: db)
    only_pool = PoolLauncher(_Refuse(), database=lambda: db)
    doc = document(base, 1, 0)
    try:
        worker = start_worker(db, settings, 1, work / "worker.log")
        fresh_ms: list[float] = []
        pool_ms: list[float] = []
        try:
            for _ in range(args.n):  # interleaved
                fresh_ms.append(start_latency(db, fresh, doc))
                pool_ms.append(start_latency(db, only_pool, doc))
                time.sleep(WARM_SECONDS)
        finally:
            stop_worker(worker)
        result: dict[str, Any] = {
            "bench": "start", "n": args.n,
            "fresh_p50_ms": round(statistics.median(fresh_ms), 1),
            "fresh_p95_ms": round(percentile(fresh_ms, 0.95), 1),
            "pool_p50_ms": round(statistics.median(pool_ms), 1),
            "pool_p95_ms": round(percentile(pool_ms, 0.95), 1),
        }
        result["ratio"] = round(result["pool_p95_ms"] / result["fresh_p95_ms"], 3)
        print(f"execute -> first step running, {args.n} executions each (ms)")
        print(f"  (a) fresh runner process : p50 {result['fresh_p50_ms']:8.1f}"
              f"   p95 {result['fresh_p95_ms']:8.1f}")
        print(f"  (b) warm pool worker     : p50 {result['pool_p50_ms']:8.1f}"
              f"   p95 {result['pool_p95_ms']:8.1f}")
        print(f"  ratio (b)/(a), p95       : {result['ratio']:8.3f}   "
              f"(goal: (b) p95 <= 1000 ms and ratio <= 0.2)")
        memory_rows = []
        for slots in args.slots:
            row = memory(db, settings, pool, base, slots, work / f"worker-{slots}.log")
            memory_rows.append({k: round(v, 2) for k, v in row.items()})
            print(f"  N={slots}: peak {row['peak_mb']:7.0f} MB (worker + browsers, PSS), "
                  f"{row['per_execution_mb']:6.0f} MB and {row['vcpu_per_execution']:.2f} vCPU"
                  " per execution (busy workflow)")
        result["memory"] = memory_rows
        if memory_rows:
            result["per_execution_mb"] = memory_rows[-1]["per_execution_mb"]
        print(json.dumps(result))
    finally:
        fresh.stop_all(5)
        db.close()
        server.shutdown()
        moto.stop()
        drop_database(admin, name)


class _Refuse:
    """A fallback that must not be used: (b) measures the pool only."""

    def launch(self, execution_id: str, runner_token: str) -> Any:
        raise RuntimeError("the pool had no free slot: the bench's worker is not live")

    def stop(self, task_arn: str, reason: str) -> bool:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--slots", default="1,4,8",
                        help="comma-separated N for the memory run ('' to skip)")
    args = parser.parse_args()
    args.slots = [int(x) for x in args.slots.split(",") if x.strip()]
    if args.n < 1:
        parser.error("--n must be at least 1")
    bench(args)


if __name__ == "__main__":
    main()
