"""One table of every benchmark figure against its goal, and the same as JSON.

`make bench` saves each benchmark's output under bench/results/<name>.log; every benchmark ends
with (or prints) one JSON line naming itself (`{"bench": "<name>", ...}`; the load run prefixes
it with `JSON `). This reads those lines, checks each figure against its goal (issue: performance
close to the floor), prints one table and writes bench/results/latest.json, so that a later run
can be compared figure by figure.

    .venv/bin/python bench/summary.py [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Figures = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Goal:
    """One figure, how to read it from the benchmarks' JSON, and the bar it must clear."""

    measure: str
    read: Callable[[Figures], float | None]
    compare: str  # "<=" or ">="
    bar: float
    unit: str = "x"

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "not run"
        check = operator.le if self.compare == "<=" else operator.ge
        return "pass" if check(value, self.bar) else "FAIL"


def _get(figures: Figures, bench: str, *path: str) -> float | None:
    node: Any = figures.get(bench)
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def _live_loaded_vs_unloaded(figures: Figures) -> float | None:
    loaded = _get(figures, "load", "api", "live", "p50")
    unloaded = _get(figures, "api", "endpoints", "GET /live", "p50_ms")
    return loaded / unloaded if loaded is not None and unloaded else None


GOALS: tuple[Goal, ...] = (
    Goal("runner: AEF ÷ plain Playwright, 12 steps with screenshots",
         lambda f: _get(f, "runner", "ratio"), "<=", 1.10),
    Goal("function cold start ÷ `python -c 'import boto3'`",
         lambda f: _get(f, "cold_start", "ratio"), "<=", 1.4),
    Goal("warm request ÷ its raw SQL, p50, worst endpoint",
         lambda f: _get(f, "api", "worst_p50_ratio"), "<=", 1.5),
    Goal("warm request ÷ its raw SQL, p99, worst endpoint",
         lambda f: _get(f, "api", "worst_p99_ratio"), "<=", 2.0),
    Goal("checkpoint approval → next action, p95",
         lambda f: _get(f, "checkpoint", "listen", "p95_ms"), "<=", 50.0, "ms"),
    # the same interval while the load bench runs: its checkpoint probe (a runner in its own
    # process, answered through the checkpoint function) during the loaded phase
    Goal("checkpoint approval → next action, p95, under load",
         lambda f: _get(f, "load", "loaded", "checkpointProbe", "p95"), "<=", 50.0, "ms"),
    Goal("load: runner write p99 loaded ÷ unloaded",
         lambda f: _get(f, "load", "ratios", "stateTxP99"), "<=", 1.2),
    Goal("load: events/s loaded ÷ baseline",
         lambda f: _get(f, "load", "ratios", "eventsPerSecond"), ">=", 0.95),
    Goal("load: /live p50 under load ÷ unloaded", _live_loaded_vs_unloaded, "<=", 3.0),
    Goal("start: warm pool p95 ÷ fresh runner p95",
         lambda f: _get(f, "start", "ratio"), "<=", 0.2),
    Goal("start: warm pool p95", lambda f: _get(f, "start", "pool_p95_ms"), "<=", 1000.0, "ms"),
    Goal("grounding: precision", lambda f: _get(f, "grounding", "precision"), ">=", 1.0, ""),
    Goal("grounding: recall", lambda f: _get(f, "grounding", "recall"), ">=", 0.9, ""),
)


def read_figures(results: Path) -> Figures:
    """The last `{"bench": ...}` JSON line of every saved benchmark output."""
    figures: Figures = {}
    for log in sorted(results.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            text = line.removeprefix("JSON ").strip()
            if not text.startswith("{"):
                continue
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if isinstance(data, dict) and "logger" not in data:  # not a log record
                figures[str(data.get("bench") or log.stem.removeprefix("bench_"))] = data
    return figures


def summarize(figures: Figures) -> dict[str, Any]:
    rows = []
    for goal in GOALS:
        value = goal.read(figures)
        rows.append({"measure": goal.measure, "value": None if value is None else round(value, 3),
                     "goal": f"{goal.compare} {goal.bar:g}{goal.unit}", "unit": goal.unit,
                     "verdict": goal.verdict(value)})
    return {"when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "platform": platform.platform()},
            "goals": rows, "figures": figures}


def render(summary: dict[str, Any]) -> str:
    width = max(len(r["measure"]) for r in summary["goals"])
    lines = [f"{'measure':<{width}}  {'value':>9}  {'goal':>10}  verdict",
             "-" * (width + 34)]
    for row in summary["goals"]:
        value = "-" if row["value"] is None else f"{row['value']:g}{row['unit']}"
        lines.append(f"{row['measure']:<{width}}  {value:>9}  {row['goal']:>10}  "
                     f"{row['verdict']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results",
                        help="the folder with the saved outputs (default: bench/results)")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(f"{args.results} does not exist: run `make bench` first")
    summary = summarize(read_figures(args.results))
    print(render(summary))
    (args.results / "latest.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten: {args.results / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
