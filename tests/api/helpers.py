"""Shared steps of the API tests: transform the fixtures, play the runner through its role."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from tests.fixtures import GMAIL_WORKFLOW, load_sop


def fixture_sop(name: str = GMAIL_WORKFLOW) -> dict[str, Any]:
    return load_sop(name)


def transform(api: Any, user: Any, sop: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = api.call("POST", "/api/aef/transform", user.token, {"sop": sop or fixture_sop()})
    assert reply.status == 201, reply.body
    return reply.body


def run_inputs(created: dict[str, Any]) -> dict[str, Any]:
    """`variables` and `secrets` for every input a transform response lists (test values)."""
    body: dict[str, Any] = {}
    for item in created["inputs"]:
        key = "variables" if item["kind"] == "variable" else "secrets"
        body.setdefault(key, {})[item["name"]] = item.get("example") or f"test-{item['name']}"
    return body


class ScriptedRunner:
    """A stand-in for the runner that writes through the runner's own database role."""

    def __init__(self, db: Any, execution_id: str) -> None:
        import hashlib
        import secrets

        self.db = db
        self.execution_id = execution_id
        self.token = secrets.token_urlsafe(16)
        with db.as_service() as conn:  # what the API did at launch: only the hash is stored
            conn.execute("update aef_executions set runner_token_hash = %s where id = %s",
                         (hashlib.sha256(self.token.encode()).digest(), execution_id))

    def tx(self) -> Any:
        return self.db.as_runner(self.execution_id, self.token)

    def claim(self) -> None:
        with self.tx() as conn:
            conn.execute("update aef_executions set status = 'starting', runner_id = 'scripted',"
                         " lease_expires_at = now() + interval '30 seconds', started_at = now()"
                         " where id = %s", (self.execution_id,))
            conn.execute("update aef_executions set status = 'running' where id = %s",
                         (self.execution_id,))
            self._event(conn, "execution_update")

    def _event(self, conn: Any, kind: str, extras: dict[str, Any] | None = None) -> None:
        conn.execute("insert into aef_events (execution_id, type, message) values (%s, %s, %s)",
                     (self.execution_id, kind, Jsonb(extras or {})))

    def run_step(self, step_id: str, progress: int) -> None:
        with self.tx() as conn:
            conn.execute("insert into aef_execution_steps (execution_id, step_id, status,"
                         " started_at) values (%s, %s, 'running', now())",
                         (self.execution_id, step_id))
            conn.execute("update aef_executions set current_step_id = %s where id = %s",
                         (step_id, self.execution_id))
            self._event(conn, "execution_update")
        with self.tx() as conn:
            conn.execute("update aef_execution_steps set status = 'completed', finished_at = now()"
                         " where execution_id = %s and step_id = %s",
                         (self.execution_id, step_id))
            conn.execute("insert into aef_logs (execution_id, step_id, level, category, message)"
                         " values (%s, %s, 'info', 'step', %s)",
                         (self.execution_id, step_id, f"{step_id} done"))
            conn.execute("update aef_executions set progress = %s where id = %s",
                         (progress, self.execution_id))
            self._event(conn, "execution_update")

    def ask_checkpoint(self, step_id: str, *, kind: str = "before_step",
                       timeout: int = 300, overdue: bool = False) -> str:
        """A pending checkpoint; `overdue`: its deadline already passed (asked `timeout` s ago),
        so tests need not sleep past it."""
        with self.tx() as conn:
            row = conn.execute(
                "insert into aef_checkpoints (execution_id, step_id, type, title,"
                " default_action, timeout_seconds, preview, choices, expires_at)"
                " values (%s, %s, %s, %s, 'pause', %s, %s, %s,"
                " case when %s then now() - interval '1 second' end) returning id",
                (self.execution_id, step_id, kind, f"Approve {step_id}?", timeout,
                 Jsonb(preview_of(step_id)), Jsonb(CHOICES), overdue)).fetchone()
            conn.execute("update aef_executions set status = 'waiting_checkpoint' where id = %s",
                         (self.execution_id,))
            self._event(conn, "checkpoint_required")
        return str(row["id"])

    def resume_after_checkpoint(self) -> None:
        with self.tx() as conn:
            conn.execute("update aef_executions set status = 'running' where id = %s",
                         (self.execution_id,))
            self._event(conn, "execution_update")

    def complete(self) -> None:
        with self.tx() as conn:
            conn.execute("update aef_executions set status = 'completed', progress = 100"
                         " where id = %s", (self.execution_id,))
            self._event(conn, "execution_complete")

    def acknowledge_stop(self) -> None:
        with self.tx() as conn:
            conn.execute("update aef_execution_steps set status = 'cancelled' where"
                         " execution_id = %s and status in ('running', 'pending',"
                         " 'waiting_checkpoint')", (self.execution_id,))
            conn.execute("update aef_executions set status = 'cancelled' where id = %s",
                         (self.execution_id,))
            self._event(conn, "execution_complete")


CHOICES = [
    {"response": "approve", "label": "Approve", "meaning": "Run this step"},
    {"response": "skip", "label": "Skip", "meaning": "Skip this step and go on"},
    {"response": "reject", "label": "Reject",
     "meaning": "Stop the whole execution (cancelled); nothing after this runs"},
]


def preview_of(step_id: str) -> dict[str, Any]:
    """A preview as the runner writes it (runner/preview.py), storage key included."""
    return {
        "url": "http://127.0.0.1:8000/mail/inbox",
        "screenshot": "https://s3.example/preview.jpg?sig=1",
        "screenshotKey": "executions/x/2-preview.jpg",
        "actions": [
            {"stepId": step_id, "kind": "navigate", "description": "Open the CRM",
             "target": None, "value": "http://127.0.0.1:8000/crm/"},
            {"stepId": step_id, "kind": "act", "description": "Type \u2022\u2022\u2022\u2022"
             " into the Password field", "value": "\u2022\u2022\u2022\u2022",
             "target": {"role": "textbox", "name": "Password",
                        "selector": 'role=textbox[name="Password"]', "resolved": True,
                        "box": {"x": 10.0, "y": 20.0, "width": 200.0, "height": 30.0}}},
            {"stepId": step_id, "kind": "fill", "description": "Fill the Name field",
             "value": "Marcus Adeyemi", "target": {"role": None, "name": None,
                                                   "selector": "#name", "resolved": False,
                                                   "box": None}},
        ],
    }
