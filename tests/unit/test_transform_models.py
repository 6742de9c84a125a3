"""The wire models the transform and the API share: aliases, extras, bounds, light import."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aef.api_models import (
    ActionRequest,
    CheckpointRequest,
    ExecuteRequest,
    LiveResponse,
    StopResponse,
    TakeoverInput,
    TransformRequest,
)
from aef.models import (
    Action,
    AefConfigPatch,
    CheckpointState,
    ExecutionLogEntry,
    LiveMessage,
    PlanStep,
    SopDocument,
    WorkflowDocument,
)
from tests.fixtures import GMAIL_WORKFLOW, INVESTOR_CRM_SOP, load_sop

ROOT = Path(__file__).resolve().parents[2]


def test_source_models_read_the_fixtures_and_keep_unknown_fields() -> None:
    sop_json = load_sop(INVESTOR_CRM_SOP)
    sop = SopDocument.model_validate(sop_json)
    loop = sop.public.nodes[1]
    assert (loop.type, loop.iterator, loop.exit_condition) == ("loop", "email", "all_processed")
    assert sop.public.nodes[2].parent_id == "L1_process_daily_emails"
    assert loop.model_extra == {}
    assert sop.public.edges[3].decision_path == "Y"
    assert sop.model_dump(by_alias=True, exclude_unset=True) == sop_json

    wf_json = load_sop(GMAIL_WORKFLOW)
    wf = WorkflowDocument.model_validate(wf_json)
    nodes = {n.id: n for n in wf.execution.workflow.nodes}
    assert nodes["gmail_login_flow"].credentials_required == {"gmail": ["email", "password"]}
    assert nodes["gmail_login_flow"].model_extra == {
        "canExecuteAsGroup": True,
        "preferredAuthMethods": {"gmail": ["email_password", "google_sso"]},
    }
    assert nodes["extract_investor_info"].actions[0].schema_["name"] == "string"
    assert wf.execution.workflow.flow[0].from_ == "navigate_to_gmail"
    assert wf.model_dump(by_alias=True, exclude_unset=True) == wf_json


def test_unknown_node_and_action_types_parse() -> None:
    doc = {
        "execution": {
            "workflow": {
                "nodes": [{"id": "x", "type": "warp", "actions": [{"type": "teleport"}]}],
                "flow": [],
            }
        }
    }
    node = WorkflowDocument.model_validate(doc).execution.workflow.nodes[0]
    assert (node.type, node.actions[0].type) == ("warp", "teleport")


def test_plan_models_are_camel_case_and_actions_compact() -> None:
    step = PlanStep(
        id="s",
        label="S",
        kind="task",
        method="automated",
        actions=[Action(type="wait", url_contains="inbox", timeout_ms=500)],
        credentials=["gmail_email"],
    )
    dumped = step.model_dump(mode="json", by_alias=True)
    assert dumped["actions"] == [{"type": "wait", "urlContains": "inbox", "timeoutMs": 500}]
    assert dumped["checkpoint"] is None and dumped["decision"] is None
    assert PlanStep.model_validate(dumped) == step
    assert PlanStep.model_validate({**dumped, "addedLater": 1}) == step  # readers are lenient
    with pytest.raises(ValidationError):
        Action.model_validate({"type": "hover"})


def test_live_message_keeps_the_seed_error_keys() -> None:
    execution_id = uuid.uuid4()
    message = LiveMessage.model_validate(
        {
            "type": "error",
            "timestamp": "2025-06-01T12:00:00.000Z",
            "seq": 7,
            "execution": {
                "id": str(execution_id),
                "status": "waiting_recovery",
                "currentStep": "a",
                "progress": 40,
            },
            "browser": {"screenshot": None, "currentUrl": None, "isReady": True},
            "logs": [
                {
                    "id": 1,
                    "timestamp": "2025-06-01T12:00:00Z",
                    "level": "error",
                    "category": "step",
                    "message": "boom",
                    "stepId": "a",
                }
            ],
            "checkpoints": [],
            "error": {
                "message": "Timed out",
                "recovery_options": [{"action": "retry", "label": "Retry"}],
                "auto_retry_in": 30,
            },
        }
    )
    dumped = message.model_dump(mode="json", by_alias=True)
    assert dumped["error"]["recovery_options"][0]["action"] == "retry"
    assert dumped["error"]["auto_retry_in"] == 30
    assert dumped["execution"]["currentStep"] == "a"
    assert dumped["browser"]["isReady"] is True
    assert dumped["logs"][0]["stepId"] == "a"
    live = LiveResponse(message=message, events=[message], last_seq=7)
    assert live.model_dump(by_alias=True)["lastSeq"] == 7


def test_checkpoint_state_and_log_entry_round_trip() -> None:
    state = CheckpointState(
        id=uuid.uuid4(),
        step_id="a",
        type="error",
        title="t",
        description="d",
        status="pending",
        default_action="reject",
        timeout_seconds=300,
        expires_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert CheckpointState.model_validate(state.model_dump(mode="json", by_alias=True)) == state
    entry = ExecutionLogEntry(
        id=3, timestamp=datetime(2025, 1, 1, tzinfo=UTC), level="warn", category="c", message="m"
    )
    assert "stepId" in entry.model_dump(by_alias=True)
    with pytest.raises(ValidationError):
        ExecutionLogEntry.model_validate({**entry.model_dump(), "level": "fatal"})


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"sop": {"public": {}}}, True),
        ({"sopId": str(uuid.uuid4())}, True),
        ({"sop_id": str(uuid.uuid4()), "config": {"checkpointMode": "none"}}, True),
        ({}, False),
        ({"sop": {}, "sopId": str(uuid.uuid4())}, False),
        ({"sop": {}, "extra": 1}, False),
        ({"sopId": "not-a-uuid"}, False),
        ({"sop": {}, "config": {"checkpoints": []}}, False),  # derived, not settable
        ({"sop": {}, "config": {"checkpointTimeout": 5}}, False),
        ({"sop": {}, "config": {"customCheckpoints": ["x" * 201]}}, False),
    ],
)
def test_transform_request(body: dict[str, Any], ok: bool) -> None:
    if ok:
        TransformRequest.model_validate(body)
    else:
        with pytest.raises(ValidationError):
            TransformRequest.model_validate(body)


def test_execute_request_bounds() -> None:
    doc_id = str(uuid.uuid4())
    ok = ExecuteRequest.model_validate(
        {"aefDocumentId": doc_id, "stepIds": ["a"], "secrets": {"gmail_email": "x@y.test"}}
    )
    assert ok.secrets == {"gmail_email": "x@y.test"}
    for bad in (
        {"aefDocumentId": doc_id, "secrets": {"bad name": "x"}},
        {"aefDocumentId": doc_id, "secrets": {"k": "v" * 5000}},
        {"aefDocumentId": doc_id, "secrets": {f"k{i}": "v" for i in range(51)}},
        {"aefDocumentId": doc_id, "stepIds": ["a"] * 501},
        {"aefDocumentId": doc_id, "stepIds": [""]},
        {"aefDocumentId": doc_id, "unknown": True},
    ):
        with pytest.raises(ValidationError):
            ExecuteRequest.model_validate(bad)


def test_action_request_and_takeover_input() -> None:
    for action in ("execute", "retry", "skip", "pause", "resume", "takeover", "release", "stop"):
        assert ActionRequest.model_validate({"action": action}).action == action
    click = {"action": "takeover", "input": {"kind": "click_at", "x": 10, "y": 20}}
    assert ActionRequest.model_validate(click).input == TakeoverInput(kind="click_at", x=10, y=20)
    for bad in (
        {"action": "jump"},
        {"action": "retry", "input": {"kind": "press", "key": "Enter"}},
        {"action": "takeover", "input": {"kind": "click_at", "x": 10}},
        {"action": "takeover", "input": {"kind": "type"}},
        {"action": "takeover", "input": {"kind": "navigate", "url": "x" * 3000}},
        {"action": "takeover", "input": {"kind": "press", "key": "Enter", "extra": 1}},
    ):
        with pytest.raises(ValidationError):
            ActionRequest.model_validate(bad)


def test_small_bodies() -> None:
    assert CheckpointRequest.model_validate({"response": "approve"}).data is None
    with pytest.raises(ValidationError):
        CheckpointRequest.model_validate({"response": "maybe"})
    with pytest.raises(ValidationError):
        CheckpointRequest.model_validate(
            {"response": "skip", "data": {str(i): i for i in range(51)}}
        )
    assert StopResponse(cleanup="forced").model_dump(by_alias=True) == {
        "status": "stopped",
        "cleanup": "forced",
    }
    patch = AefConfigPatch.model_validate({"checkpoint_mode": "none", "stepTimeout": 10})
    assert patch.model_dump(by_alias=True, exclude_none=True) == {
        "stepTimeout": 10,
        "checkpointMode": "none",
    }


def test_models_import_without_heavy_dependencies() -> None:
    code = (
        "import sys, aef.models\n"
        "heavy = {'fastapi', 'starlette', 'psycopg', 'boto3', 'playwright', 'jwt'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
