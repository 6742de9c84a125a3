"""Costs the deploy path removed, each as a ratio against the old way measured in this run.

1. `/live` screenshot signing: the shared store (one S3 client per warm sandbox) against a new
   `ScreenshotStore` per request (what `/live` did), medians over many signings.
2. The sweeper's cold import (fresh interpreters, warm .pyc caches): `functions.sweeper.app`
   against what it used to pull in (`aef.http`, i.e. FastAPI, for its log formatter).
3. The stop's wait for a silent runner: the transactions it opens in the wait, counted
   against the old poll (a locking transaction every 100 ms), for the same timeout.

    .venv/bin/python bench/bench_deploy.py [--signings 300] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aef.screenshots import ScreenshotStore  # noqa: E402
from aef.settings import Settings  # noqa: E402

KEY = "executions/0b6a3c1e-8a4f-4a8e-9a51-3f0c2d1b7e11/000001-open.jpg"


def _settings() -> Settings:
    return Settings(s3_endpoint_url="http://127.0.0.1:9", aws_region="us-east-1")


def signing(n: int) -> dict[str, float]:
    """Per-call medians (ms): a new store each time vs one shared store (no network)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    settings = _settings()
    shared = ScreenshotStore(settings)
    shared.sign(KEY)  # the first request of a sandbox builds the client; not counted
    fresh_ms: list[float] = []
    shared_ms: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        ScreenshotStore(settings).sign(KEY)
        t1 = time.perf_counter()
        shared.sign(KEY)
        t2 = time.perf_counter()
        fresh_ms.append((t1 - t0) * 1000)
        shared_ms.append((t2 - t1) * 1000)
    return {"perRequestClientMs": statistics.median(fresh_ms),
            "sharedClientMs": statistics.median(shared_ms)}


def cold_import(runs: int) -> dict[str, float]:
    """Fresh-interpreter medians (ms) of the sweeper's imports now and before."""
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    now = [sys.executable, "-c", "import functions.sweeper.app"]
    before = [sys.executable, "-c", "import aef.http, aef.service"]

    def timed(argv: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True)
        return (time.perf_counter() - started) * 1000

    timed(now)
    timed(before)  # warm both .pyc caches
    now_ms, before_ms = [], []
    for _ in range(runs):
        now_ms.append(timed(now))
        before_ms.append(timed(before))
    return {"sweeperImportMs": statistics.median(now_ms),
            "oldSweeperImportMs": statistics.median(before_ms)}


def stop_wait_transactions(timeout: float) -> dict[str, int]:
    """How many transactions each wait schedule opens while a runner stays silent."""
    from aef.service import STOP_POLL_FIRST_SECONDS, STOP_POLL_MAX_SECONDS

    new, elapsed, pause = 0, 0.0, STOP_POLL_FIRST_SECONDS
    while elapsed < timeout:
        elapsed += min(pause, timeout - elapsed)
        pause = min(pause * 2, STOP_POLL_MAX_SECONDS)
        new += 1
    return {"newReads": new, "oldLockingPolls": round(timeout / 0.1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signings", type=int, default=300)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)

    sign = signing(args.signings)
    imports = cold_import(args.runs)
    waits = stop_wait_transactions(Settings().stop_ack_timeout_seconds)
    result = {
        "bench": "deploy",
        **{k: round(v, 3) for k, v in {**sign, **imports}.items()},
        **waits,
        "signRatio": round(sign["sharedClientMs"] / sign["perRequestClientMs"], 3),
        "sweeperImportRatio": round(imports["sweeperImportMs"] / imports["oldSweeperImportMs"],
                                    2),
        "stopWaitRatio": round(waits["newReads"] / waits["oldLockingPolls"], 2),
    }
    print(f"/live signing: shared client {result['sharedClientMs']} ms vs a client per request "
          f"{result['perRequestClientMs']} ms -> ratio {result['signRatio']}")
    print(f"sweeper import: {result['sweeperImportMs']} ms vs with FastAPI "
          f"{result['oldSweeperImportMs']} ms -> ratio {result['sweeperImportRatio']}")
    print(f"stop wait ({Settings().stop_ack_timeout_seconds:.0f} s, silent runner): "
          f"{waits['newReads']} plain reads vs {waits['oldLockingPolls']} locking polls -> "
          f"ratio {result['stopWaitRatio']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
