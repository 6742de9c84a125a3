"""POST /api/aef/execute and POST /api/aef/action/{executionId}: start and steer a run."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header

from aef import service
from aef.api_models import ActionRequest, ActionResponse, ExecuteRequest, ExecuteResponse
from aef.http import ExecuteCaller, WriteCaller, create_app, lambda_handler, problem_responses

router = APIRouter()

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
           description="Same key + same body → the same execution; another body → 409"),
]


@router.post(
    "/api/aef/execute",
    response_model=ExecuteResponse,
    status_code=202,
    responses=problem_responses(
        "document_not_found", "execution_not_found", "document_mismatch", "invalid_state",
        "too_many_active", "idempotency_key_reused", "idempotency_key_unusable", "unknown_step",
        "illegal_transition", "concurrent_update", "missing_inputs"),
    summary="Start an execution of an AEF document (the runner launches after commit)",
    description=(
        "Every input the selected steps read (the document's `aef.inputs`: `variable`s go in "
        "`variables`, `credential`s in `secrets`) must be given, else 422 `missing_inputs` "
        "lists each missing one (`missing: [{name, kind, requiredBy}]`) and nothing is queued. "
        "With `stepIds` only the inputs of those steps are needed (and any variable they read "
        "that only unselected steps produce). Given names the document does not use are "
        "reported in the response's `warnings`."
    ),
)
async def execute(body: ExecuteRequest, caller: ExecuteCaller,
            idempotency_key: IdempotencyKey = None) -> Any:
    return service.start_execution(caller, body, idempotency_key)


@router.post(
    "/api/aef/action/{executionId}",
    response_model=ActionResponse,
    responses=problem_responses(
        "execution_not_found", "invalid_state", "runner_not_live", "too_many_active",
        "unknown_step", "execution_finished", "illegal_transition", "concurrent_update",
        "missing_inputs"),
    summary="Steer an execution: execute a step, retry, skip, pause, resume, takeover, stop",
    description=(
        "An action that starts a run again (execute, retry, skip or resume of an idle or failed "
        "execution) checks the execution's variables and secrets against the inputs of the "
        "steps it will run: 422 `missing_inputs` when one is missing, nothing is queued."
    ),
)
async def action(executionId: UUID, body: ActionRequest, caller: WriteCaller) -> Any:
    return service.act(caller, str(executionId), body)


app = create_app("AEF execute", routers=[router])
handler = lambda_handler(app)
