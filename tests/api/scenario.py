"""Steps shared by the contract, error-code and list tests: an SOP from this repository,
a transformed document, a started execution, and arranging rows as an admin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEMO_SOP = ROOT / "local" / "demo" / "workflows" / "investor-crm-demo.json"
# what the demo workflow reads (its `aef.inputs`); POST /execute refuses a run without them
DEMO_INPUTS = {"variables": {"base_url": "http://127.0.0.1:8000"},
               "secrets": {"demo_email": "demo@example.com", "demo_password": "demo-pass"}}


def demo_sop(title: str | None = None) -> dict[str, Any]:
    sop = json.loads(DEMO_SOP.read_text())
    if title is not None:
        sop["meta"]["title"] = title
    return sop


def transformed(api: Any, user: Any, title: str | None = None) -> dict[str, Any]:
    reply = api.call("POST", "/api/aef/transform", user.token, {"sop": demo_sop(title)})
    assert reply.status == 201, reply.body
    return dict(reply.body)


def started(api: Any, user: Any, created: dict[str, Any]) -> dict[str, Any]:
    reply = api.call("POST", "/api/aef/execute", user.token,
                     {"aefDocumentId": created["aefDocumentId"],
                      "executionId": created["executionId"], **DEMO_INPUTS})
    assert reply.status == 202, reply.body
    return dict(reply.body)


def admin_sql(db: Any, query: str, params: Any = None) -> list[dict[str, Any]]:
    from tests.integration.factories import admin_connection

    with admin_connection(db) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
