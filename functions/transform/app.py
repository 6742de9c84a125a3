"""POST /api/aef/transform: turn a user's SOP into an executable AEF document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aef import service
from aef.api_models import TransformRequest, TransformResponse
from aef.http import WriteCaller, create_app, lambda_handler, problem_responses

router = APIRouter()


@router.post(
    "/api/aef/transform",
    response_model=TransformResponse,
    status_code=201,
    responses=problem_responses("sop_not_found", "invalid_sop"),
    summary="Transform an SOP (stored by sopId, or inline) into an AEF document",
)
async def transform(body: TransformRequest, caller: WriteCaller) -> Any:
    return service.transform_sop(caller, body)


app = create_app("AEF transform", routers=[router])
handler = lambda_handler(app)
