"""bench/summary.py reads every benchmark's JSON line and holds each figure to its goal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_summary_table_and_latest_json(tmp_path: Path) -> None:
    outputs = {
        "bench_runner.log": 'text before\n{"bench": "runner", "ratio": 1.07}\n',
        "bench_api.log": json.dumps({"bench": "api", "worst_p50_ratio": 1.8,
                                     "worst_p99_ratio": 1.9,
                                     "endpoints": {"GET /live": {"p50_ms": 2.0}}}) + "\ntail\n"
        # a request's log line after the figures is not a figure
        + '{"level": "INFO", "logger": "aef.http", "message": "request"}\n',
        "load.log": "table\nJSON " + json.dumps({"ratios": {"stateTxP99": 1.1,
                                                            "eventsPerSecond": 0.97},
                                                 "api": {"live": {"p50": 8.0}},
                                                 "loaded": {"checkpointProbe": {
                                                     "p95": 62.5}}}) + "\n",
        "bench_broken.log": "{not json\n",
    }
    for name, text in outputs.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "summary.py"),
                             "--results", str(tmp_path)], capture_output=True, text=True,
                            check=True)
    summary = json.loads((tmp_path / "latest.json").read_text())
    verdicts = {row["measure"]: row["verdict"] for row in summary["goals"]}
    assert verdicts["runner: AEF ÷ plain Playwright, 12 steps with screenshots"] == "pass"
    assert verdicts["warm request ÷ its raw SQL, p50, worst endpoint"] == "FAIL"
    assert verdicts["warm request ÷ its raw SQL, p99, worst endpoint"] == "pass"
    assert verdicts["load: events/s loaded ÷ baseline"] == "pass"
    assert verdicts["load: /live p50 under load ÷ unloaded"] == "FAIL"  # 8 ms ÷ 2 ms = 4x
    assert verdicts["checkpoint approval → next action, p95, under load"] == "FAIL"
    assert verdicts["checkpoint approval → next action, p95"] == "not run"
    assert verdicts["function cold start ÷ `python -c 'import boto3'`"] == "not run"
    assert "FAIL" in result.stdout and "latest.json" in result.stdout
    assert set(summary["figures"]) == {"runner", "api", "load"}
