"""The HTTP layer every function shares: app factory, problem+json errors, guards, logs, auth.

Everything here is plain ASGI or FastAPI hooks, so it behaves the same under uvicorn (local
stack) and under Mangum (Lambda). Error bodies follow RFC 9457 with a stable `code`; nothing a
client sees ever contains a stack trace.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aef import __version__
from aef.auth import Claims, verify_token
from aef.deadline import deadline, lambda_deadline
from aef.errors import AefError, Unauthorized
from aef.logs import bind_execution_id as bind_execution_id  # re-exported for endpoints
from aef.logs import bind_log_context, configure_logging, current_request_id, log_context
from aef.settings import Settings, get_settings

log = logging.getLogger("aef.http")

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:=+/-]{1,128}$")
# What a browser may send and read. template.yaml's HttpApi CorsConfiguration says the same
# (API Gateway answers preflights itself); tests/deploy keeps the two equal.
CORS_ALLOW_HEADERS = ("Authorization", "Content-Type", "X-Request-Id", "Idempotency-Key",
                      "If-None-Match")
CORS_EXPOSE_HEADERS = (REQUEST_ID_HEADER, "ETag", "Retry-After", "RateLimit-Limit",
                       "RateLimit-Remaining", "RateLimit-Reset")

# --------------------------------------------------------------------------------------------
# Problem details
# --------------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `body.sopId` or `path.id`")
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details with AEF's stable `code`; more members may be present."""

    model_config = ConfigDict(extra="allow", title="ProblemDetails")

    type: str = Field(description="URI naming the problem type: `urn:aef:problem:<code>`")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(None, description="The request path")
    code: str = Field(description="Stable machine-readable error code")
    requestId: str | None = None
    errors: list[FieldError] | None = Field(
        None, description="Field-level problems (validation_failed)"
    )


_CODE_FOR_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int,
    code: str,
    *,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Render one problem+json response; standard members win over `extra`."""
    body: dict[str, Any] = {k: v for k, v in jsonable_encoder(extra).items() if v is not None}
    body.update(
        {
            "type": f"urn:aef:problem:{code}",
            "title": title or _phrase(status),
            "status": status,
            "code": code,
            "detail": detail or title or _phrase(status),
            "instance": instance,
            "requestId": current_request_id(),
        }
    )
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


async def _send_problem(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, detail: str
) -> None:
    response = problem_response(status, code, detail=detail, instance=scope.get("path"))
    await response(scope, receive, send)


def _field_name(loc: Iterable[Any]) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


async def _aef_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AefError)
    if exc.status >= 500:
        log.error("request failed", extra={"code": exc.code, "status": exc.status})
    return problem_response(
        exc.status,
        exc.code,
        title=exc.title,
        detail=exc.detail,
        instance=request.url.path,
        headers=exc.headers or None,
        **exc.extra,
    )


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return problem_response(
            400,
            "malformed_json",
            title="The request body is not valid JSON",
            detail="The request body is not valid JSON",
            instance=request.url.path,
        )
    fields = [
        {"field": _field_name(err.get("loc", ())), "message": str(err.get("msg", "invalid"))}
        for err in errors
    ]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:3])
    if len(fields) > 3:
        detail += f"; and {len(fields) - 3} more"
    return problem_response(
        422,
        "validation_failed",
        title="The request is not valid",
        detail=detail,
        instance=request.url.path,
        errors=fields,
    )


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else None
    if status == 404 and detail == "Not Found":
        detail = f"No route for {request.method} {request.url.path}"
    if status == 405 and detail == "Method Not Allowed":
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(
        status,
        _CODE_FOR_STATUS.get(status, f"http_{status}"),
        detail=detail,
        instance=request.url.path,
        headers=dict(exc.headers) if exc.headers else None,
    )


# --------------------------------------------------------------------------------------------
# ASGI middleware
# --------------------------------------------------------------------------------------------


def _pick_request_id(scope: Scope) -> str:
    """Client's X-Request-Id when sane, else API Gateway's request id, else a new uuid4."""
    supplied = Headers(scope=scope).get("x-request-id")
    if supplied and _SANE_REQUEST_ID.match(supplied):
        return supplied
    event = scope.get("aws.event")
    if isinstance(event, dict):
        rid = (event.get("requestContext") or {}).get("requestId")
        if isinstance(rid, str) and _SANE_REQUEST_ID.match(rid):
            return rid
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """Outermost: request id (echoed as X-Request-Id), access log line, last-resort 500, and
    the Lambda's deadline for the request's retries."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _pick_request_id(scope)
        token = log_context.set({"requestId": request_id})
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            # retries below (the ECS launch) must end before the Lambda timeout does
            with deadline(lambda_deadline(scope.get("aws.context"))):
                await _run_guarded(self.app, scope, receive, send_with_id)
        finally:
            ctx = log_context.get() or {}
            path_params = scope.get("path_params") or {}
            execution_id = path_params.get("executionId")
            if (
                "executionId" not in ctx
                and isinstance(execution_id, str)
                and len(execution_id) <= 64
            ):
                ctx["executionId"] = execution_id
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "durationMs": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            log_context.reset(token)


async def _run_guarded(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app`; an exception before the response started becomes a logged, bare 500."""
    response_started = False

    async def tracking_send(message: Message) -> None:
        nonlocal response_started
        if message["type"] == "http.response.start":
            response_started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except Exception:
        log.exception("unhandled error", extra={"path": scope.get("path")})
        if response_started:
            raise
        await _send_problem(
            scope, receive, send, 500, "internal_error", "An unexpected error occurred"
        )


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class BodyGuardMiddleware:
    """Body size limit and JSON-only bodies, enforced before any parsing.

    The declared Content-Length is checked first; then the body is read in full (Mangum hands it
    over in one message anyway) while counting, so a body without or with a lying
    Content-Length is still bounded. The app receives the buffered body.
    Also turns unexpected exceptions into a 500 here, inside CORS, so the browser can read it.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _send_problem(
                    scope, receive, send, 400, "bad_request", "Invalid Content-Length header"
                )
                return
            if int(declared) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and not _is_json(headers.get("content-type")):
            await _send_problem(
                scope,
                receive,
                send,
                415,
                "unsupported_media_type",
                "Request bodies must be JSON (Content-Type: application/json)",
            )
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await _run_guarded(self.app, scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_problem(
            scope,
            receive,
            send,
            413,
            "payload_too_large",
            f"Request body exceeds {self.max_body_bytes} bytes",
        )


# --------------------------------------------------------------------------------------------
# Auth dependency
# --------------------------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="Supabase access token (user session)"
)


def current_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    """FastAPI dependency: the verified caller, or 401 problem+json.

    Sync on purpose: a cold JWKS fetch blocks, and FastAPI runs sync dependencies in a thread.
    """
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthorized(
                "Authorization must be 'Bearer <token>'",
                code="invalid_token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
            )
        raise Unauthorized(
            "no bearer token", code="missing_token", headers={"WWW-Authenticate": "Bearer"}
        )
    settings: Settings = getattr(request.app.state, "aef_settings", None) or get_settings()
    claims = verify_token(credentials.credentials, settings=settings)
    check: Callable[[Claims], None] | None = getattr(request.app.state, "aef_claims_check", None)
    if check is not None:
        check(claims)
    bind_log_context(userId=claims.sub)
    return claims


CurrentClaims = Annotated[Claims, Depends(current_claims)]


# --------------------------------------------------------------------------------------------
# OpenAPI: every error response is problem+json
# --------------------------------------------------------------------------------------------

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
_ALWAYS = (400, 404, 422, 429, 500, 503)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for route-specific errors (e.g. 409); rendered as problem+json."""
    return {
        status: {
            "description": _phrase(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}},
        }
        for status in statuses
    }


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make every documented error response problem+json and add the ones the layer can emit.

    Idempotent; called on each app's schema and safe to call on a merged one.
    """
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem_schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in problem_schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas["ProblemDetails"] = problem_schema
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "put", "post", "delete", "patch", "head", "options"}:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            wanted = set(_ALWAYS)
            if operation.get("security"):
                wanted.add(401)
            if "requestBody" in operation:
                wanted.update({413, 415})
            for code in wanted:
                responses.setdefault(str(code), {"description": _phrase(code)})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    if response.get("description") in (None, "", "Validation Error"):
                        response["description"] = _phrase(int(status))
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": dict(PROBLEM_REF)}}
            operation["responses"] = dict(sorted(responses.items()))
    text = json.dumps(schema.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and f"#/components/schemas/{unused}" not in text:
            del schemas[unused]
    components["schemas"] = dict(sorted(schemas.items()))
    return schema


# --------------------------------------------------------------------------------------------
# App factory
# --------------------------------------------------------------------------------------------


def create_app(
    title: str,
    *,
    routers: Sequence[APIRouter] = (),
    configure: Callable[[FastAPI], None] | None = None,
    claims_check: Callable[[Claims], None] | None = None,
    settings: Settings | None = None,
    description: str | None = None,
    version: str = __version__,
) -> FastAPI:
    """A FastAPI app with AEF's error model, guards, request ids, JSON logs and CORS.

    `claims_check(claims)` runs after signature verification on every authenticated request
    (e.g. refuse a deleted user by raising `Unauthorized`). `settings` defaults to
    `get_settings()`; tests pass their own.
    """
    settings = settings or get_settings()
    configure_logging()
    app = FastAPI(
        title=title,
        version=version,
        description=description or "",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.aef_settings = settings
    app.state.aef_claims_check = claims_check
    app.add_exception_handler(AefError, _aef_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)

    # add_middleware prepends: the last added is the outermost.
    app.add_middleware(BodyGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware)

    for router in routers:
        app.include_router(router)
    if configure is not None:
        configure(app)

    def openapi() -> dict[str, Any]:
        return document_problems(FastAPI.openapi(app))

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def lambda_handler(app: FastAPI) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Mangum adapter with lifespan off and problem+json sent as text (not base64)."""
    from mangum import Mangum
    from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

    return Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "+json"])
