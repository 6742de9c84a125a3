"""What a checkpoint preview costs when the checkpoint opens, against the step screenshot every
step already takes.

On the demo site (local/demo), real Chromium, the demo workflow as transformed:

(a) the preview of the CRM write `add_investor_record` on the CRM search page (10 actions: 6
    field values, 2 `act`s grounded by the resolver, a click target) plus its outlined
    screenshot (runner/preview.py: build_preview + outlined_screenshot);
(b) the baseline: one step screenshot of the same page (runner/browser.capture_jpeg).

Runs are interleaved so drift hits both alike; prints the medians and the ratio (a)/(b), and
one JSON line for machines.

    .venv/bin/python bench/bench_preview.py [--n 21]

Needs Chromium at /usr/bin/chromium (or AEF_CHROMIUM_PATH). No database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def main(n: int) -> dict[str, float]:
    from playwright.async_api import async_playwright

    from aef.models import PlanStep
    from aef.plan import walk
    from aef.transform import transform
    from local.demo import WORKFLOW_PATH, serve_demo
    from runner.browser import capture_jpeg
    from runner.grounding import GroundingResolver
    from runner.preview import build_preview, outlined_screenshot

    plan = transform(json.loads(WORKFLOW_PATH.read_text())).plan
    step: PlanStep = next(s for s in walk(plan) if s.id == "add_investor_record")
    variables = {"investor_name": "Marcus Adeyemi", "investor_company": "Northwind Capital",
                 "investor_email": "marcus@northwind.example", "investor_phone": "+44 20",
                 "investor_focus": "Climate tech, Series A", "message_summary": "Intro"}
    resolver = GroundingResolver()
    chromium = os.environ.get("AEF_CHROMIUM_PATH", "/usr/bin/chromium")
    previews: list[float] = []
    shots: list[float] = []
    with serve_demo() as demo:
        variables["base_url"] = demo.base_url
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = await browser.new_page()
            await page.goto(f"{demo.base_url}/crm/?q=marcus%40northwind.example")
            for _ in range(2):  # warm up both paths
                preview = await build_preview(page, [step], variables=variables, secrets={},
                                              resolver=resolver)
                await outlined_screenshot(page, preview)
                await capture_jpeg(page)
            for _ in range(n):
                started = time.perf_counter()
                preview = await build_preview(page, [step], variables=variables, secrets={},
                                              resolver=resolver)
                assert await outlined_screenshot(page, preview) is not None
                previews.append(time.perf_counter() - started)
                started = time.perf_counter()
                assert await capture_jpeg(page) is not None
                shots.append(time.perf_counter() - started)
            await browser.close()
    a, b = statistics.median(previews), statistics.median(shots)
    print(f"preview + outlined screenshot: median {a * 1000:.0f} ms "
          f"({len(preview.actions)} actions, {len(preview.boxes)} outlined)")
    print(f"step screenshot (baseline):    median {b * 1000:.0f} ms")
    print(f"ratio: {a / b:.1f}x the step screenshot, over {n} interleaved runs")
    result = {"previewMedianMs": round(a * 1000, 1), "screenshotMedianMs": round(b * 1000, 1),
              "ratio": round(a / b, 2), "n": n}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=21)
    asyncio.run(main(parser.parse_args().n))
