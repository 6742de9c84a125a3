"""Grounding benchmark: SOP-style instructions against pages that copy real apps' markup.

Every case of bench/grounding/cases.py is grounded on a fresh load of its page (the static
pages in bench/grounding/pages/), then acted on as the runner would (hit test, custom
dropdowns, hidden checkboxes). Prints precision (acts on the right element with the right
action and value, over all acts), recall (right acts over the cases a person would simply do),
every wrong act and every miss, and the median grounding time as a ratio of a baseline measured
in the same run (one plain Playwright ``get_by_role`` lookup on the same page).

    .venv/bin/python bench/bench_grounding.py [--pages 14] [--no-act] [--quiet]

Needs Chromium at /usr/bin/chromium (or AEF_CHROMIUM_PATH); no network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.grounding.cases import CASES, ESCALATE, Case  # noqa: E402

PAGES = ROOT / "bench" / "grounding" / "pages"
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@dataclass
class Row:
    case: Case
    chosen: str  # gid, "back", "key:<Key>" or ESCALATE
    outcome: str  # ok | miss | wrong | escalated-ok
    detail: str = ""
    match: dict[str, Any] | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    resolve_ms: list[float] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)

    @property
    def acted(self) -> list[Row]:
        return [r for r in self.rows if r.chosen != ESCALATE]

    @property
    def wrong(self) -> list[Row]:
        return [r for r in self.rows if r.outcome == "wrong"]

    @property
    def should_act(self) -> list[Row]:
        return [r for r in self.rows if r.case.expected != ESCALATE]

    @property
    def precision(self) -> float:
        acted = self.acted
        return 1.0 if not acted else (len(acted) - len(self.wrong)) / len(acted)

    @property
    def recall(self) -> float:
        should = self.should_act
        done = [r for r in should if r.outcome == "ok"]
        return 1.0 if not should else len(done) / len(should)


def _sample_variables(case: Case) -> dict[str, Any]:
    names = re.findall(r"\{\{\s*([\w.-]+)\s*\}\}", f"{case.instruction} {case.value or ''}")
    return {**{n: f"sample {n}" for n in names}, **case.variables}


async def _ground_one(page: Any, case: Case, act: bool, report: Report, work: Path) -> Row:
    from runner.actions import ActionContext, NeedsHuman, StepError, perform_resolution
    from runner.grounding import GroundingResolver, Resolution, locator_from_cached

    await page.goto((PAGES / f"{case.page}.html").as_uri())
    started = time.perf_counter()
    await page.get_by_role("button", name="Send").count()
    report.baseline_ms.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    result = await GroundingResolver().resolve(page, case.instruction, case.variables)
    report.resolve_ms.append((time.perf_counter() - started) * 1000)
    expected = set(case.expected.split("|"))
    if not isinstance(result, Resolution):
        outcome = "escalated-ok" if case.expected == ESCALATE else "miss"
        return Row(case, ESCALATE, outcome, result.reason)
    if result.action == "back":
        chosen = "back"
    elif result.locator is None:
        chosen = f"key:{result.value}"
    else:
        loc = locator_from_cached(page, result.locator)
        count = await loc.count()
        chosen = str(await loc.get_attribute("gid")) if count == 1 else f"{count} elements"
    row = Row(case, chosen, "ok", result.description, result.match)
    problems = []
    if chosen not in expected:
        problems.append(f"chose {chosen}")
    if case.action and result.action != case.action:
        problems.append(f"action {result.action} instead of {case.action}")
    if case.value is not None and result.value != case.value:
        problems.append(f"value {result.value!r} instead of {case.value!r}")
    if problems and (case.expected != ESCALATE or not act):
        row.outcome, row.detail = "wrong", "; ".join(problems)
        return row
    if act:  # acting runs the hit test and the option check: an escalation there is safe
        ctx = ActionContext(work_dir=work, variables=_sample_variables(case),
                            default_timeout_ms=3000)
        try:
            await perform_resolution(page, result, ctx, timeout_ms=3000)
        except NeedsHuman as exc:
            row.chosen, row.detail = ESCALATE, f"escalated when acting: {exc.detail}"
            row.outcome = "escalated-ok" if case.expected == ESCALATE else "miss"
            return row
        except StepError as exc:
            row.outcome, row.detail = "miss", f"act failed: {exc.detail}"
        if problems:
            row.outcome, row.detail = "wrong", "; ".join(problems)
    return row


async def run(pages: int | None = None, act: bool = True, tabs: int = 1) -> Report:
    """Ground (and act on) every case of the first ``pages`` pages.

    ``tabs`` > 1 shares the cases among that many browser tabs at once, each in a context of
    its own: the outcomes are the same, the timings are not (the benchmark uses one tab).
    """
    from playwright.async_api import async_playwright

    names = list(dict.fromkeys(c.page for c in CASES))[:pages]
    cases = [c for c in CASES if c.page in names]
    report = Report()
    rows: list[Row | None] = [None] * len(cases)
    with tempfile.TemporaryDirectory(prefix="aef-bench-grounding-") as tmp:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=os.environ.get("AEF_CHROMIUM_PATH", "/usr/bin/chromium"),
                headless=True, args=CHROMIUM_ARGS)

            async def tab(share: range) -> None:
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = await context.new_page()
                for index in share:
                    rows[index] = await _ground_one(page, cases[index], act, report, Path(tmp))
                await context.close()

            try:
                await asyncio.gather(*(tab(range(first, len(cases), tabs))
                                       for first in range(tabs)))
            finally:
                await browser.close()
    report.rows = [row for row in rows if row is not None]
    return report


def print_report(report: Report, *, quiet: bool = False) -> None:
    rows = report.rows
    pages = len({r.case.page for r in rows})
    escalate = sum(r.case.expected == ESCALATE for r in rows)
    print(f"grounding benchmark: {len(rows)} cases on {pages} pages "
          f"({escalate} should escalate, {len(rows) - escalate} should act)")
    print(f"acted {len(report.acted)}, wrong acts {len(report.wrong)}, "
          f"precision {report.precision:.1%}, recall {report.recall:.1%} "
          f"({sum(r.outcome == 'ok' for r in report.should_act)}/{len(report.should_act)})")
    for r in report.wrong:
        print(f"  WRONG ACT {r.case.page}: {r.case.instruction!r}: expected {r.case.expected}, "
              f"{r.detail} ({r.match})")
    if not quiet:
        for r in rows:
            if r.outcome == "miss":
                print(f"  miss {r.case.page}: {r.case.instruction!r}: {r.detail}")
    resolve, base = statistics.median(report.resolve_ms), statistics.median(report.baseline_ms)
    print(f"median grounding {resolve:.1f} ms vs one get_by_role lookup {base:.1f} ms: "
          f"ratio {resolve / base:.1f}x")
    print(json.dumps({"bench": "grounding", "cases": len(rows), "pages": pages,
                      "acted": len(report.acted), "wrong": len(report.wrong),
                      "precision": round(report.precision, 4), "recall": round(report.recall, 4),
                      "resolve_p50_ms": round(resolve, 1), "lookup_p50_ms": round(base, 1),
                      "ratio": round(resolve / base, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=None, help="only the first N pages")
    parser.add_argument("--no-act", action="store_true", help="ground only, do not act")
    parser.add_argument("--quiet", action="store_true", help="do not list the misses")
    args = parser.parse_args()
    report = asyncio.run(run(args.pages, act=not args.no_act))
    print_report(report, quiet=args.quiet)
    if report.wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
