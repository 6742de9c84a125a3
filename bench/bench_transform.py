"""Cost of one SOP -> AEF transform, against the cost of merely touching the document.

The baseline is a `json.loads(json.dumps(doc))` round trip of the same v0.8 fixture, measured
in the same run, so the printed ratio does not depend on the machine. Calls are timed in
batches (a sample is the mean of a batch); baseline and transform batches alternate, and the
medians and the median of the paired ratios are printed.

    .venv/bin/python bench/bench_transform.py [--samples 31] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "tests" / "fixtures" / "sops" / "investor-crm-sop-v0.8.json"


def batch_seconds(fn: Callable[[], Any], batch: int) -> float:
    """Mean time per call over a batch of calls."""
    start = time.perf_counter()
    for _ in range(batch):
        fn()
    return (time.perf_counter() - start) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=31)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()

    from aef.transform import transform

    doc = json.loads(FIXTURE.read_text())
    now = datetime(2025, 1, 1, tzinfo=UTC)
    result = transform(doc, now=now)

    def touch() -> Any:
        return json.loads(json.dumps(doc))

    def run() -> Any:
        return transform(doc, now=now)

    batch_seconds(touch, args.batch)  # warm caches and lazily built validators
    batch_seconds(run, args.batch)
    # Alternate the two so a busy machine slows both alike; the median of the paired ratios
    # is the figure to compare between runs.
    baselines, measured, ratios = [], [], []
    for _ in range(args.samples):
        b = batch_seconds(touch, args.batch)
        m = batch_seconds(run, args.batch)
        baselines.append(b)
        measured.append(m)
        ratios.append(m / b)

    print(
        f"fixture: {FIXTURE.name} ({len(FIXTURE.read_bytes())} bytes, "
        f"{result.estimated_step_count} plan steps)"
    )
    print(f"baseline json round trip: median {statistics.median(baselines) * 1e6:9.1f} µs/call")
    print(f"transform:                median {statistics.median(measured) * 1e6:9.1f} µs/call")
    print(f"ratio transform / baseline: {statistics.median(ratios):.1f}x (median of pairs)")


if __name__ == "__main__":
    main()
