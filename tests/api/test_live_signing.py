"""GET /live signs the screenshot URL with one S3 client per warm sandbox, not one per request."""

from __future__ import annotations

from typing import Any

import boto3
from psycopg.types.json import Jsonb

from aef.screenshots import get_screenshot_store, set_screenshot_store
from tests.api.helpers import transform
from tests.integration.factories import admin_connection


def test_live_reuses_one_s3_client_across_requests(api: Any, db: Any, new_user: Any) -> None:
    user = new_user()
    execution_id = transform(api, user)["executionId"]
    key = f"executions/{execution_id}/000001-open.jpg"
    with admin_connection(db) as conn:
        conn.execute("update aef_executions set browser = %s where id = %s",
                     (Jsonb({"screenshotKey": key}), execution_id))
    created: list[str] = []

    def count(**_: Any) -> None:
        created.append("s3")

    session = boto3._get_default_session()
    session.events.register("creating-client-class.s3", count)
    set_screenshot_store(None)  # a fresh sandbox
    try:
        urls = []
        for _ in range(3):
            reply = api.call("GET", f"/api/aef/live/{execution_id}", user.token)
            assert reply.status == 200, reply.body
            urls.append(reply.body["message"]["browser"]["screenshot"])
        assert all(key in url and "Signature" in url for url in urls)
        assert created == ["s3"]  # built once, on the first request that needed it
        assert get_screenshot_store().client is get_screenshot_store().client
    finally:
        session.events.unregister("creating-client-class.s3", count)
        set_screenshot_store(None)


def test_live_signs_the_pending_checkpoints_preview_screenshot(api: Any, db: Any,
                                                               new_user: Any) -> None:
    """The preview's stored URL expires; GET /live signs its key afresh and never shows it."""
    from tests.api.helpers import CHOICES, preview_of

    user = new_user()
    execution_id = transform(api, user)["executionId"]
    preview = preview_of("add")
    key = f"executions/{execution_id}/000002-add-preview.jpg"
    preview["screenshotKey"] = key
    with admin_connection(db) as conn:
        conn.execute(
            "insert into aef_checkpoints (execution_id, step_id, type, title, default_action,"
            " timeout_seconds, preview, choices) values (%s, 'add', 'before_step', 'Add?',"
            " 'pause', 300, %s, %s)", (execution_id, Jsonb(preview), Jsonb(CHOICES)))
    set_screenshot_store(None)
    try:
        reply = api.call("GET", f"/api/aef/live/{execution_id}", user.token)
    finally:
        set_screenshot_store(None)
    assert reply.status == 200, reply.body
    [checkpoint] = reply.body["message"]["checkpoints"]
    shown = checkpoint["preview"]
    assert key in shown["screenshot"] and "Signature" in shown["screenshot"]
    assert "screenshotKey" not in shown
    assert shown["actions"] == preview["actions"] and checkpoint["choices"] == CHOICES
