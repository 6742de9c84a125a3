"""The HTTP API's bodies: what each route accepts (`*Request`, `_Request`: unknown fields
are a 422, every size bounded) and answers (`*Response`, camelCase wire models).

The vocabulary they share with the plan and the live messages (statuses, ids, log entries,
live messages) is in `aef.models`; the route modules and `aef.service` import from here.
"""

import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field, model_validator

from aef.models import (
    AefConfigPatch,
    ExecutionLogEntry,
    ExecutionStatus,
    LiveMessage,
    PlanInput,
    SecretName,
    SecretValue,
    StepId,
    _Request,
    _Sparse,
    _Wire,
)


def wire_json(value: Any) -> str:
    """`value` as the API sends JSON: compact, UTF-8 as is, no NaN or Infinity."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class TransformRequest(_Request):
    """Transform a stored SOP (`sopId`) or one sent inline (`sop`): exactly one of them."""

    sop_id: UUID | None = None
    sop: dict[str, Any] | None = Field(default=None, max_length=100)
    config: AefConfigPatch | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> "TransformRequest":
        if (self.sop_id is None) == (self.sop is None):
            raise ValueError("give exactly one of sopId or sop")
        return self


class TransformResponse(_Wire):
    aef_document: dict[str, Any]
    aef_document_id: UUID
    execution_id: UUID
    warnings: list[str] = []
    inputs: list[PlanInput] = []
    estimated_step_count: int
    estimated_duration: int  # seconds


class ExecuteRequest(_Request):
    aef_document_id: UUID
    step_ids: list[StepId] | None = Field(
        default=None, max_length=500,
        description="Run only these steps; a selected compound, loop or decision runs with its "
                    "whole body. Omitted: the whole plan.")
    execution_id: UUID | None = None
    secrets: dict[SecretName, SecretValue] | None = Field(default=None, max_length=50)
    # Non-secret inputs for {{placeholders}} (e.g. a base URL); visible in logs and events.
    variables: dict[SecretName, SecretValue] | None = Field(default=None, max_length=50)


class ExecuteResponse(_Wire):
    execution_id: UUID
    status: ExecutionStatus
    websocket_url: str
    channel: str
    poll_url: str
    warnings: list[str] = []  # e.g. provided variables or secrets the document does not use


class TakeoverInput(_Request):
    """One input a person sends to the browser during a manual takeover."""

    kind: Literal["click_at", "type", "press", "navigate"]
    x: float | None = Field(default=None, ge=0, le=10_000)
    y: float | None = Field(default=None, ge=0, le=10_000)
    text: str | None = Field(default=None, max_length=10_000)
    key: str | None = Field(default=None, min_length=1, max_length=50)
    url: str | None = Field(default=None, min_length=1, max_length=2048)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "TakeoverInput":
        needed = {
            "click_at": ("x", "y"),
            "type": ("text",),
            "press": ("key",),
            "navigate": ("url",),
        }[self.kind]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.kind} needs {', '.join(missing)}")
        return self


class ActionRequest(_Request):
    """Control a running execution; recovery (retry/skip/takeover/release/stop) goes here too."""

    step_id: StepId | None = None
    action: Literal["execute", "retry", "skip", "pause", "resume", "takeover", "release", "stop"]
    input: TakeoverInput | None = None

    @model_validator(mode="after")
    def _input_only_for_takeover(self) -> "ActionRequest":
        if self.input is not None and self.action != "takeover":
            raise ValueError("input is only allowed with action takeover")
        return self


class ActionResponse(_Wire):
    execution_id: UUID
    status: ExecutionStatus
    action: str
    delivered: Literal["runner", "launched"]


class CheckpointRequest(_Request):
    response: Literal["approve", "reject", "skip"]
    data: dict[str, Any] | None = Field(default=None, max_length=50)


class CheckpointResponse(_Sparse):
    """The seed's `{status: 'success', nextAction?}`, with the decision in its own field."""

    status: Literal["success"] = "success"
    decision: Literal["approved", "rejected", "skipped"]
    next_action: str | None = Field(default=None, description=(
        "What the runner does next: run_step, skip_step, cancel_execution, take_yes_branch, "
        "take_no_branch"))


class StopResponse(_Wire):
    status: Literal["stopped"] = "stopped"
    cleanup: Literal["completed", "forced"]


class LogsResponse(_Wire):
    logs: list[ExecutionLogEntry]
    next_cursor: str | None = None


class DocumentSummary(_Wire):
    id: UUID
    title: str
    sop_id: UUID | None
    created_at: datetime


class DocumentResponse(DocumentSummary):
    """One AEF document with its stored body (the plan and its inputs are in `aef`)."""

    aef_document: dict[str, Any]


class DocumentsResponse(_Wire):
    """The caller's AEF documents, newest first; pass `nextCursor` as `after` for more."""

    documents: list[DocumentSummary]
    next_cursor: str | None


class ExecutionSummary(_Wire):
    """One row of the execution history."""

    id: UUID
    document_id: UUID
    document_title: str
    status: ExecutionStatus
    progress: int = Field(ge=0, le=100)
    current_step: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None = Field(
        description="Seconds from start to finish (to now while running); null before start")


class ExecutionsResponse(_Wire):
    """The caller's executions, newest first; pass `nextCursor` as `after` for more."""

    executions: list[ExecutionSummary]
    next_cursor: str | None


class LiveResponse(_Wire):
    message: LiveMessage
    events: list[LiveMessage] = []
    last_seq: int = Field(ge=0)
