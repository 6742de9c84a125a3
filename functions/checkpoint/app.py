"""POST /api/aef/checkpoint/{checkpointId}: a person's answer to a checkpoint, exactly once."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from aef import service
from aef.api_models import CheckpointRequest, CheckpointResponse
from aef.http import WriteCaller, create_app, lambda_handler, problem_responses

router = APIRouter()


@router.post(
    "/api/aef/checkpoint/{checkpointId}",
    response_model=CheckpointResponse,
    responses=problem_responses(
        "checkpoint_not_found", "checkpoint_already_answered", "checkpoint_expired",
        "illegal_transition", "concurrent_update"),
    summary="Approve, reject or skip a pending checkpoint (a second answer is a 409)",
)
async def respond(checkpointId: UUID, body: CheckpointRequest, caller: WriteCaller) -> Any:
    return service.respond_checkpoint(caller, str(checkpointId), body)


app = create_app("AEF checkpoint", routers=[router])
handler = lambda_handler(app)
