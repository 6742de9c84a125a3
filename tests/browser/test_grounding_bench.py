"""The grounding benchmark (bench/bench_grounding.py) as a test: never a wrong act.

Every case is grounded on its page copied from a real app and acted on as the runner acts
(hit test, custom dropdowns, hidden checkboxes). Precision must be 100 %; recall is printed and
held to the issue's floor.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
RECALL_FLOOR = 0.9


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_grounding",
                                                  ROOT / "bench" / "bench_grounding.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_grounding"] = module
    spec.loader.exec_module(module)
    return module


async def test_grounding_benchmark_never_acts_wrongly() -> None:
    bench = _bench()
    cases = bench.CASES  # type: ignore[attr-defined]
    assert len(cases) >= 200 and len({c.page for c in cases}) >= 10
    escalate = sum(c.expected == bench.ESCALATE for c in cases)  # type: ignore[attr-defined]
    assert 0.2 <= escalate / len(cases) <= 0.35
    report = await bench.run(tabs=3)  # type: ignore[attr-defined]
    bench.print_report(report)  # type: ignore[attr-defined]
    assert not report.wrong, [(r.case.instruction, r.detail) for r in report.wrong]
    assert report.precision == 1.0
    assert report.recall >= RECALL_FLOOR, f"recall {report.recall:.1%}"
