"""The reads: GET /api/aef/logs/{executionId}, /live/{executionId} (polling fallback), one
document by id, and the caller's lists GET /api/aef/documents and /api/aef/executions (newest
first, keyset pages)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response

from aef import service
from aef.api_models import (
    DocumentResponse,
    DocumentsResponse,
    ExecutionsResponse,
    LiveResponse,
    LogsResponse,
)
from aef.http import ReadCaller, create_app, json_response, lambda_handler, problem_responses

router = APIRouter()

Cursor = Annotated[str | None, Query(max_length=300, pattern=r"^[A-Za-z0-9_\-]*$",
                                     description="`nextCursor` of the previous page")]
PageSize = Annotated[int, Query(ge=1, le=100)]


@router.get(
    "/api/aef/logs/{executionId}",
    response_model=LogsResponse,
    responses=problem_responses("execution_not_found", "invalid_cursor"),
    summary="A page of an execution's logs (keyset pagination: pass nextCursor as `after`)",
)
async def logs(
    executionId: UUID,
    caller: ReadCaller,
    after: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_\-]*$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    level: Literal["debug", "info", "warn", "error"] | None = None,
    stepId: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> Any:
    # sent as built (the response model documents it; validating 100 entries again per page
    # was most of this route's own time)
    return json_response(
        service.read_logs(caller, str(executionId), after=after, limit=limit, level=level,
                          step_id=stepId),
        headers=caller.rate_limit_headers)


@router.get(
    "/api/aef/live/{executionId}",
    response_model=LiveResponse,
    responses={**problem_responses("execution_not_found"),
               304: {"description": "Not modified since the ETag"}},
    summary="The live message snapshot plus the events after `after` (polling fallback)",
)
async def live(
    executionId: UUID,
    caller: ReadCaller,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=1000)] = None,
) -> Any:
    headers = caller.rate_limit_headers  # the response below is built here, not by FastAPI
    body, etag = service.read_live(caller, str(executionId), after=after,
                                   if_none_match=if_none_match)
    if body is None:
        return Response(status_code=304, headers={"ETag": etag, **headers})
    # The events go out as the JSON text they were stored as (no re-serialization).
    return Response(body, media_type="application/json",
                    headers={"ETag": etag, "Cache-Control": "no-cache", **headers})


@router.get(
    "/api/aef/documents",
    response_model=DocumentsResponse,
    responses=problem_responses("invalid_cursor"),
    summary="The caller's AEF documents, newest first (keyset pages: pass nextCursor as `after`)",
)
async def documents(caller: ReadCaller, after: Cursor = None, limit: PageSize = 20) -> Any:
    return json_response(service.list_documents(caller, after=after, limit=limit),
                         headers=caller.rate_limit_headers)


@router.get(
    "/api/aef/documents/{documentId}",
    response_model=DocumentResponse,
    responses=problem_responses("document_not_found"),
    summary="One of the caller's AEF documents: its plan, checkpoints and inputs (under `aef`)",
)
async def document(documentId: UUID, caller: ReadCaller) -> Any:
    return service.read_document(caller, str(documentId))


@router.get(
    "/api/aef/executions",
    response_model=ExecutionsResponse,
    responses=problem_responses("invalid_cursor"),
    summary="The caller's executions, newest first, by status and document (keyset pages)",
)
async def executions(
    caller: ReadCaller,
    after: Cursor = None,
    limit: PageSize = 20,
    status: Annotated[str | None, Query(max_length=300, description=(
        "Comma-separated execution statuses, e.g. `running,waiting_checkpoint`"))] = None,
    documentId: UUID | None = None,
) -> Any:
    return json_response(
        service.list_executions(caller, after=after, limit=limit, status=status,
                                document_id=str(documentId) if documentId else None),
        headers=caller.rate_limit_headers)


app = create_app("AEF logs", routers=[router])
handler = lambda_handler(app)
