"""DELETE /api/aef/stop/{executionId}: cooperative stop with a forced backstop."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from aef import service
from aef.api_models import StopResponse
from aef.http import WriteCaller, create_app, lambda_handler, problem_responses

router = APIRouter()


@router.delete(
    "/api/aef/stop/{executionId}",
    response_model=StopResponse,
    responses=problem_responses("execution_not_found", "execution_finished",
                                "illegal_transition", "concurrent_update"),
    summary="Stop an execution; stopping a stopped execution answers the same body again",
)
async def stop(executionId: UUID, caller: WriteCaller) -> Any:
    return service.stop_execution(caller, str(executionId))


app = create_app("AEF stop", routers=[router])
handler = lambda_handler(app)
