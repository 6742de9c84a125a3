"""Fault c: S3 goes away mid-run. Screenshot uploads are best effort: each failed one is a warn
line on its step, the steps complete, the execution completes, and the live view keeps the
last screenshot that did upload.
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest

from aef.db import Database
from tests.faults.checks import (
    assert_outbox_intact,
    assert_steps_journaled,
    blocking,
    execution_row,
    log_ids,
    log_lines,
    step_rows,
)
from tests.faults.conftest import BUCKET, Person, moto_s3, shut_down
from tests.integration.factories import create_document
from tests.runner.helpers import aef_document, eventually, task
from tests.runner.pages import Site

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_screenshot_uploads_fail_but_the_steps_and_the_run_complete(
        api: Any, db: Database, person: Person, site: Site, spawn: Any) -> None:
    # s1 waits long enough to still be running when S3 is shut down, even on a busy machine
    plan = [task(f"s{i}", [{"type": "navigate", "url": f"{site.base_url}/page?n={i}"},
                           {"type": "wait", "timeoutMs": 3000 if i == 1 else 700},
                           {"type": "click", "selector": "#go"}]) for i in range(3)]
    document = create_document(db, person.user,
                               document=aef_document(plan, {"stepTimeout": 5}))
    with moto_s3() as (endpoint, server):
        launcher = spawn(AEF_S3_ENDPOINT_URL=endpoint)
        reply = await blocking(api.call, "POST", "/api/aef/execute", person.token,
                               {"aefDocumentId": str(document["id"])})
        assert reply.status == 202 and reply.body["status"] == "queued", reply.body
        execution_id = reply.body["executionId"]
        proc = launcher.latest()

        def first_uploaded() -> dict[str, Any] | None:
            row = execution_row(db, execution_id)
            steps = step_rows(db, execution_id)
            done = steps.get("s0", {}).get("status") == "completed"
            return row if done and (row["browser"] or {}).get("screenshotKey") else None

        row = await eventually(first_uploaded, within=40, interval=0.02,
                               what="the first step's screenshot")
        first_key = row["browser"]["screenshotKey"]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        stored = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert first_key in stored and first_key.endswith("-s0.jpg")
        await asyncio.to_thread(shut_down, server)  # connections are refused from now on
        flushed = log_ids(db, execution_id)
        assert step_rows(db, execution_id)["s1"]["status"] == "running"

    assert await asyncio.to_thread(proc.wait, 90) == 0, launcher.output()
    row = execution_row(db, execution_id)
    assert row["status"] == "completed" and row["progress"] == 100
    steps = step_rows(db, execution_id)
    assert {k: (s["status"], s["attempts"]) for k, s in steps.items()} \
        == {f"s{i}": ("completed", 1) for i in range(3)}
    warned = [line for line in log_lines(db, execution_id)
              if line["message"].startswith("Screenshot upload failed")]
    assert [line["step_id"] for line in warned] == ["s1", "s2"]
    assert all(line["level"] == "warn" and line["category"] == "browser" for line in warned)
    # the first failure costs one attempt; after it uploads pause instead of failing per step
    assert [line["message"] for line in warned] == [
        "Screenshot upload failed: EndpointConnectionError",
        "Screenshot upload failed: UploadPaused"]
    # the last screenshot that made it stays the execution's screenshot
    assert row["browser"]["screenshotKey"] == first_key
    live = await blocking(api.call, "GET", f"/api/aef/live/{execution_id}", person.token)
    assert live.status == 200
    assert live.body["message"]["type"] == "execution_complete"
    assert first_key in live.body["message"]["browser"]["screenshot"]
    assert log_ids(db, execution_id)[:len(flushed)] == flushed
    assert_outbox_intact(db, execution_id)
    assert_steps_journaled(db, execution_id)
