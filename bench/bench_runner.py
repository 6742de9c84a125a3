"""What AEF costs on top of the browser work: the same N-step workflow, twice.

(a) a plain Playwright script: goto, fill, click, JPEG screenshot, per step;
(b) the AEF runner engine on the same steps: claim + lease, every step written `running` and
    `completed` with its event (outbox + Realtime broadcast), logs in batches, each screenshot
    uploaded to S3 (a moto server in a process of its own, as S3 is another machine in
    production) and signed, the network guard's egress proxy in the path.

Both are timed without the browser launch (and teardown): (a) from the first navigation to the
last screenshot, (b) from the first step's `started_at` to the last step's `finished_at`, as
the database recorded them. Median of --runs runs each; the ratio is (b) / (a).

    .venv/bin/python bench/bench_runner.py [--steps 12] [--runs 5]

Needs PostgreSQL (DATABASE_URL or 127.0.0.1:5432, a throwaway database is created and dropped)
and Chromium at /usr/bin/chromium (or AEF_CHROMIUM_PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.httpserver import PageHTTPServer  # noqa: E402

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

BUCKET = "aef-bench"
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


# --- a local site ----------------------------------------------------------------------------
class _Pages(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        n = parse_qs(urlsplit(self.path).query).get("n", ["0"])[0]
        body = (f"<!doctype html><html><head><title>Page {n}</title></head><body><main>"
                f"<h1 id='title'>Page {n}</h1><label>Note <input id='note'></label>"
                f"<button id='go' onclick=\"document.getElementById('title').textContent="
                f"'Done ' + document.getElementById('note').value\">Go</button>"
                f"<p>{'Lorem ipsum dolor sit amet. ' * 40}</p></main></body></html>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve() -> tuple[PageHTTPServer, str]:
    server = PageHTTPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_s3() -> tuple[subprocess.Popen[bytes], str]:
    """A moto S3 server in its own process: its request handling must not share the engine's
    GIL, any more than AWS S3 shares the runner's CPU."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the moto S3 server did not start") from None
            time.sleep(0.05)


# --- the workflow ------------------------------------------------------------------------------
def plan(base: str, steps: int) -> list[dict[str, Any]]:
    return [{
        "id": f"step-{i}", "label": f"Step {i}", "kind": "task", "method": "automated",
        "actions": [
            {"type": "navigate", "url": f"{base}/page?n={i}"},
            {"type": "fill", "selector": "#note", "value": f"note {i}"},
            {"type": "click", "selector": "#go"},
        ],
    } for i in range(steps)]


async def plain_playwright(base: str, steps: int, chromium: str) -> float:
    """(a): seconds from the first navigation to the last screenshot."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True,
                                           args=CHROMIUM_ARGS)
        page = await (await browser.new_context(viewport={"width": 1280, "height": 800})
                      ).new_page()
        started = time.perf_counter()
        for i in range(steps):
            await page.goto(f"{base}/page?n={i}")
            await page.locator("#note").fill(f"note {i}")
            await page.locator("#go").click()
            await page.screenshot(type="jpeg", quality=60)
        elapsed = time.perf_counter() - started
        await browser.close()
    return elapsed


def _new_execution(db: Any, document: dict[str, Any]) -> tuple[str, str]:
    from psycopg.types.json import Jsonb

    user_id = str(uuid.uuid4())
    token = secrets.token_urlsafe(32)
    import psycopg

    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("insert into auth.users (id, aud, role, email) values"
                     " (%s, 'authenticated', 'authenticated', %s)",
                     (user_id, f"{user_id[:8]}@bench.test"))
    with db.as_service() as conn:
        doc = conn.execute("insert into aef_documents (user_id, title, document)"
                           " values (%s, 'bench', %s) returning id",
                           (user_id, Jsonb(document))).fetchone()
        row = conn.execute("insert into aef_executions (user_id, document_id, status,"
                           " runner_token_hash) values (%s, %s, 'queued', %s) returning id",
                           (user_id, doc["id"], hashlib.sha256(token.encode()).digest())
                           ).fetchone()
    return str(row["id"]), token


async def through_aef(db: Any, settings: Any, base: str, steps: int) -> float:
    """(b): seconds from the first step's start to the last step's end (database clock)."""
    from runner.engine import run_execution

    document = {"meta": {"title": "bench"},
                "aef": {"config": {"stepTimeout": 10}, "plan": plan(base, steps),
                        "transformedAt": "2026-01-01T00:00:00Z", "transformedBy": "bench",
                        "version": "1.0"}}
    execution_id, token = _new_execution(db, document)
    outcome = await run_execution(settings, execution_id, token, db=db)
    if outcome.status != "completed":
        raise RuntimeError(f"the AEF run ended {outcome.status}: {outcome.message}")
    with db.as_service() as conn:
        row = conn.execute(
            "select extract(epoch from max(finished_at) - min(started_at)) as seconds,"
            " count(*) filter (where status = 'completed') as done"
            " from aef_execution_steps where execution_id = %s", (execution_id,)).fetchone()
        shots = conn.execute("select count(*) as n from aef_events where execution_id = %s"
                             " and message -> 'browser' ->> 'screenshot' is not null",
                             (execution_id,)).fetchone()
    if int(row["done"]) != steps or int(shots["n"]) < steps:
        raise RuntimeError("the AEF run did not complete every step with a screenshot")
    return float(row["seconds"])


async def bench(args: argparse.Namespace) -> None:
    import boto3

    from aef.db import Database
    from aef.settings import get_settings
    from local.schema import apply_schema, create_database, drop_database

    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"aef_bench_{uuid.uuid4().hex[:8]}"
    url = create_database(admin, name)
    apply_schema(url)
    moto, endpoint = _start_s3()
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=BUCKET)
    server, base = _serve()
    db = Database(url, min_size=1, max_size=4)
    chromium = get_settings().chromium_path or "/usr/bin/chromium"
    settings = get_settings().model_copy(update={
        "database_url": url, "allow_loopback": True, "headless": True,
        "chromium_path": chromium, "s3_endpoint_url": endpoint, "screenshot_bucket": BUCKET,
        "work_dir": f"/tmp/aef-bench-{name}"})
    try:
        await plain_playwright(base, 2, chromium)  # warm caches once, untimed
        plain: list[float] = []
        aef: list[float] = []
        for _ in range(args.runs):  # interleaved, so drift hits both sides alike
            plain.append(await plain_playwright(base, args.steps, chromium))
            aef.append(await through_aef(db, settings, base, args.steps))
        a, b = statistics.median(plain), statistics.median(aef)
        print(f"{args.steps}-step workflow, screenshot after each step, median of {args.runs}"
              " (browser launch excluded)")
        print(f"  (a) plain Playwright : {a * 1000:8.1f} ms  ({a / args.steps * 1000:6.1f} ms"
              " per step)  runs: " + ", ".join(f"{x * 1000:.0f}" for x in plain))
        print(f"  (b) through AEF      : {b * 1000:8.1f} ms  ({b / args.steps * 1000:6.1f} ms"
              " per step)  runs: " + ", ".join(f"{x * 1000:.0f}" for x in aef))
        print(f"  ratio (b)/(a)        : {b / a:8.2f}x   overhead per step: "
              f"{(b - a) / args.steps * 1000:.1f} ms")
        print(json.dumps({"bench": "runner", "steps": args.steps, "runs": args.runs,
                          "plain_ms": round(a * 1000, 1), "aef_ms": round(b * 1000, 1),
                          "ratio": round(b / a, 3),
                          "overhead_per_step_ms": round((b - a) / args.steps * 1000, 1)}))
    finally:
        db.close()
        server.shutdown()
        moto.terminate()
        moto.wait(timeout=10)
        drop_database(admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.steps < 10:
        parser.error("--steps must be at least 10")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
