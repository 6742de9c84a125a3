"""Measure finished runs and compare them with the transform's duration estimate.

    python bench/estimate_calibration.py --database-url postgresql://.../aef_dev [--write]

Reads every completed execution of the demo workflow in that database (run them first, e.g.
`aef demo --yes` a few times), and prints, per action kind, the count, median and mean time
the runner logged; the per-step overhead (a step run minus its actions); each run's duration
(started to finished); and the estimate ÷ the median run. `--write` stores the figures in
tests/fixtures/measurements/demo-run.json, which a unit test holds the estimate against and
`aef/estimate.py`'s constants come from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORKFLOW = ROOT / "local" / "demo" / "workflows" / "investor-crm-demo.json"
OUTPUT = ROOT / "tests" / "fixtures" / "measurements" / "demo-run.json"


def measure(url: str) -> dict[str, Any]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as conn:
        runs = conn.execute(
            "select e.id, extract(epoch from e.finished_at - e.started_at)::float as seconds"
            " from aef_executions e join aef_documents d on d.id = e.document_id"
            " where e.status = 'completed' and d.document->'meta'->>'id' = %s"
            " order by e.started_at", ("investor-crm-demo",)).fetchall()
        ids = [r["id"] for r in runs]
        actions = conn.execute(
            "select details->>'type' as kind, (details->>'durationMs')::float as ms"
            " from aef_logs where execution_id = any(%s) and details ? 'durationMs'",
            (ids,)).fetchall()
        overhead = conn.execute(
            "select extract(epoch from s.finished_at - s.started_at)::float"
            "   - coalesce((select sum((l.details->>'durationMs')::float) / 1000 from aef_logs l"
            "       where l.execution_id = s.execution_id and l.step_id = s.step_id"
            "         and l.details ? 'durationMs'), 0) / greatest(1, (select count(*)"
            "       from aef_execution_steps x where x.execution_id = s.execution_id"
            "         and x.step_id = s.step_id)) as seconds"
            " from aef_execution_steps s where s.execution_id = any(%s)"
            "   and not exists (select 1 from aef_checkpoints c where c.execution_id ="
            "     s.execution_id and c.step_id = s.step_id)"
            "   and exists (select 1 from aef_logs l where l.execution_id = s.execution_id"
            "     and l.step_id = s.step_id and l.details ? 'durationMs')", (ids,)).fetchall()
    by_kind: dict[str, list[float]] = defaultdict(list)
    for row in actions:
        by_kind[row["kind"]].append(row["ms"])
    return {
        "workflow": "local/demo/workflows/investor-crm-demo.json",
        "runs": [round(r["seconds"], 1) for r in runs],
        "actions": {kind: {"count": len(v), "medianMs": round(statistics.median(v)),
                           "meanMs": round(statistics.fmean(v))}
                    for kind, v in sorted(by_kind.items())},
        "stepOverheadMedianSeconds": round(statistics.median(r["seconds"] for r in overhead), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--write", action="store_true", help=f"store the figures in {OUTPUT}")
    args = parser.parse_args()
    from aef.transform import transform

    figures = measure(args.database_url)
    if not figures["runs"]:
        print("no completed run of the demo workflow in that database", file=sys.stderr)
        return 1
    estimate = transform(json.loads(WORKFLOW.read_text())).estimated_duration_seconds
    actual = statistics.median(figures["runs"])
    figures["estimateSeconds"] = estimate
    print(json.dumps(figures, indent=2))
    print(f"estimate {estimate} s ÷ median run {actual:.1f} s = {estimate / actual:.2f}")
    if args.write:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
