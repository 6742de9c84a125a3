"""The HTTP layer every function shares: app factory, problem+json errors, guards, logs, auth.

Everything here is plain ASGI or FastAPI hooks, so it behaves the same under uvicorn (local
stack) and under Mangum (Lambda). Error bodies follow RFC 9457 with a stable `code`; nothing a
client sees ever contains a stack trace.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aef import __version__
from aef.api_models import wire_json
from aef.auth import Claims, verify_token
from aef.deadline import deadline, lambda_deadline
from aef.errors import PROBLEM_CODES, AefError, Unauthorized
from aef.logs import bind_execution_id as bind_execution_id  # re-exported for endpoints
from aef.logs import bind_log_context, configure_logging, current_request_id, log_context
from aef.models import ProblemDetails
from aef.service import Caller, rate_limit
from aef.settings import Settings, get_settings

log = logging.getLogger("aef.http")

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:=+/-]{1,128}$")

# --------------------------------------------------------------------------------------------
# Problem details
# --------------------------------------------------------------------------------------------


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int,
    *,
    code: str,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Render one problem+json response; standard members win over `extra`.

    A code missing from `PROBLEM_CODES` (or with another status there) is our bug: it is
    logged, and the response still goes out as asked.
    """
    registered = PROBLEM_CODES.get(code)
    if registered is None or registered.status != status:
        log.error("problem code not in PROBLEM_CODES", extra={"code": code, "status": status})
    body: dict[str, Any] = {k: v for k, v in jsonable_encoder(extra).items() if v is not None}
    standard = {
        "type": f"urn:aef:problem:{code}",
        "title": title or _phrase(status),
        "status": status,
        "code": code,
        "detail": detail or title or _phrase(status),
        "instance": instance,
        "requestId": current_request_id(),
    }
    body.update({k: v for k, v in standard.items() if v is not None})
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def json_response(body: Any, *, headers: dict[str, str] | None = None) -> Response:
    """A 200 whose body is already in its wire shape (the route's `response_model` documents
    it): FastAPI would validate it against that model and serialize it again on every request."""
    return Response(wire_json(body).encode(), media_type="application/json", headers=headers)


async def _send_problem(
    scope: Scope, receive: Receive, send: Send, status: int, *, code: str, detail: str
) -> None:
    response = problem_response(status, code=code, detail=detail, instance=scope.get("path"))
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
        code=exc.code,
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
            code="malformed_json",
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
        code="validation_failed",
        title="The request is not valid",
        detail=detail,
        instance=request.url.path,
        errors=fields,
    )


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    """The framework's own refusals: no route (404), wrong method (405, with `Allow`), and a
    body it could not parse (400; BodyGuardMiddleware normally refuses those first)."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    path = request.url.path
    if status == 404:
        code, detail = "not_found", f"No route for {request.method} {path}"
    elif status == 405:
        code, detail = "method_not_allowed", f"{request.method} is not allowed on {path}"
    elif status == 400:
        code, detail = "malformed_json", "The request body could not be parsed as JSON"
    else:
        log.error("unexpected HTTP exception", extra={"status": status, "path": path})
        status, code, detail = 500, "internal_error", "An unexpected error occurred"
    return problem_response(
        status,
        code=code,
        detail=detail,
        instance=path,
        headers=dict(exc.headers) if exc.headers and status != 500 else None,
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
            scope, receive, send, 500, code="internal_error", detail="An unexpected error occurred"
        )


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _unstorable(value: Any) -> bool:
    """A string (or key) with NUL or an unpaired surrogate: Postgres cannot store either."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def json_body_problem(body: bytes) -> str | None:
    """Why `body` is not JSON this API accepts (None when it is).

    RFC 8259: JSON between systems is UTF-8; numbers are finite. Python's parser also has
    limits (nesting depth, 4300-digit integers), and Postgres cannot store NUL or unpaired
    surrogates, both only reachable through `\\u` escapes. One code for all: `malformed_json`.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"The request body is not UTF-8 (invalid byte at offset {exc.start})"
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        return (f"The request body is not valid JSON: {exc.msg} "
                f"(line {exc.lineno}, column {exc.colno})")
    except RecursionError:
        return "The request body nests arrays or objects too deeply"
    except ValueError as exc:  # NaN/Infinity, 1e999, an integer with more than 4300 digits
        return f"The request body has a number this API cannot represent: {str(exc)[:120]}"
    if "\\u" in text and _unstorable(value):
        return "The request body has a string with \\u0000 or an unpaired surrogate"
    return None


class BodyGuardMiddleware:
    """Body size limit, JSON-only bodies and JSON this API accepts, before any model parsing.

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
                await _send_problem(scope, receive, send, 400, code="invalid_content_length",
                                    detail="The Content-Length header is not a number")
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
                code="unsupported_media_type",
                detail="Request bodies must be JSON (Content-Type: application/json)",
            )
            return
        problem = json_body_problem(body) if body else None
        if problem is not None:
            await _send_problem(scope, receive, send, 400, code="malformed_json", detail=problem)
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
            code="payload_too_large",
            detail=f"Request body exceeds {self.max_body_bytes} bytes",
        )


# --------------------------------------------------------------------------------------------
# CORS (the same lists as the HttpApi's CorsConfiguration in template.yaml)
# --------------------------------------------------------------------------------------------

CORS_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
CORS_ALLOW_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "If-None-Match",
                      REQUEST_ID_HEADER)
CORS_EXPOSE_HEADERS = ("ETag", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                       "Retry-After", REQUEST_ID_HEADER)
CORS_MAX_AGE_SECONDS = 600


@dataclass(frozen=True)
class OriginPolicy:
    """The browser origins allowed to call the API (settings: `AEF_CORS_ORIGINS`).

    Each entry is an exact origin, `*` (any origin), or a pattern whose `*` stands for one
    host label or a port: `http://localhost:*`, `https://*.example.com`.
    """

    origins: tuple[str, ...]

    @property
    def any_origin(self) -> bool:
        return "*" in self.origins

    @property
    def exact(self) -> tuple[str, ...]:
        return tuple(o for o in self.origins if "*" not in o)

    @property
    def pattern(self) -> str | None:
        """One regular expression for the wildcard entries (None when there are none)."""
        parts = [re.escape(o).replace(r"\*", "[A-Za-z0-9-]+")
                 for o in self.origins if "*" in o and o != "*"]
        return "|".join(f"(?:{p})" for p in parts) or None

    def allows(self, origin: str) -> bool:
        pattern = self.pattern
        return (self.any_origin or origin in self.exact
                or (pattern is not None and re.fullmatch(pattern, origin) is not None))


def log_refused_preflight(origin: str, method: str, path: str, refused: Sequence[str],
                          requested_headers: str | None = None) -> None:
    """One structured line per refused preflight: the browser only says "CORS error"."""
    log.warning("CORS preflight refused", extra={
        "origin": origin, "method": method, "path": path, "refused": list(refused),
        "requestHeaders": requested_headers})


class CorsMiddleware:
    """Starlette's CORS handling with AEF's origin patterns; a refused preflight is logged
    and answered 403 problem+json (`cors_refused`) instead of a plain-text 400."""

    def __init__(self, app: ASGIApp, *, policy: OriginPolicy) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self._cors = CORSMiddleware(
            app,
            allow_origins=["*"] if policy.any_origin else list(policy.exact),
            allow_origin_regex=None if policy.any_origin else policy.pattern,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=CORS_MAX_AGE_SECONDS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else Headers()
        origin = headers.get("origin")
        method = headers.get("access-control-request-method")
        if scope["type"] != "http" or scope["method"] != "OPTIONS" or not origin or not method:
            await self._cors(scope, receive, send)
            return
        response = self._cors.preflight_response(request_headers=headers)
        if response.status_code >= 400:
            # Starlette names what it refused: "Disallowed CORS origin, headers"
            refused = bytes(response.body).decode().removeprefix("Disallowed CORS ").split(", ")
            requested = headers.get("access-control-request-headers")
            log_refused_preflight(origin, method, scope["path"], refused, requested)
            response = problem_response(
                403, code="cors_refused", title="CORS preflight refused",
                detail=f"This API does not allow the requested {' and '.join(refused)} "
                       f"from {origin}", instance=scope["path"],
                headers={"Vary": response.headers.get("vary", "Origin")})
        await response(scope, receive, send)


# --------------------------------------------------------------------------------------------
# Auth dependency
# --------------------------------------------------------------------------------------------


class _Bearer(HTTPBearer):
    """FastAPI dependency: the verified caller (`Claims`), or 401 problem+json.

    One dependency that is also the OpenAPI security scheme (`HTTPBearer`), instead of
    FastAPI's `HTTPBearer` plus a dependency on it: FastAPI solves each dependency of each
    request anew, and that solving was a sizeable share of a warm request's own time.

    `async def` although it may block (a cold JWKS fetch), as every dependency and route of
    the functions: a Lambda sandbox serves one request at a time (the local gateway gives each
    invocation its own thread and loop), so blocking the loop holds nobody up, while a sync
    `def` would cost a worker thread per call: under Mangum anyio's thread pool ends with each
    request's root task, so every sync dependency started a new thread (~0.4 ms each).
    """

    def __init__(self) -> None:
        super().__init__(
            auto_error=False,
            bearerFormat="JWT",
            scheme_name="HTTPBearer",
            description="Supabase access token (user session)",
        )

    async def __call__(self, request: Request) -> Claims:  # type: ignore[override]
        return verified_claims(request)


def verified_claims(request: Request) -> Claims:
    """The caller the request's bearer token names, verified, or `Unauthorized`."""
    authorization = request.headers.get("authorization")
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if not authorization or not scheme or not token or scheme.lower() != "bearer":
        if authorization:
            raise Unauthorized(
                "Authorization must be 'Bearer <token>'",
                code="invalid_token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
            )
        raise Unauthorized(
            "no bearer token", code="missing_token", headers={"WWW-Authenticate": "Bearer"}
        )
    state = request.app.state
    settings: Settings = getattr(state, "aef_settings", None) or get_settings()
    claims = verify_token(token, settings=settings)
    check: Callable[[Claims], None] | None = getattr(state, "aef_claims_check", None)
    if check is not None:
        check(claims)
    bind_log_context(userId=claims.sub)
    return claims


current_claims = _Bearer()
CurrentClaims = Annotated[Claims, Depends(current_claims)]


class _RateLimitedCaller(_Bearer):
    """FastAPI dependency: the verified caller, after taking one token from its `bucket`
    (429 problem+json when it is empty). The RateLimit headers go on the route's response
    and stay on `caller.rate_limit_headers` for a route that builds its own response.
    Verification and the token in one dependency (see `_Bearer`)."""

    def __init__(self, bucket: str) -> None:
        super().__init__()
        self.bucket = bucket

    async def __call__(  # type: ignore[override]
        self, request: Request, response: Response
    ) -> Caller:
        caller = Caller.from_claims(verified_claims(request))
        caller.rate_limit_headers = rate_limit(caller, self.bucket)
        response.headers.update(caller.rate_limit_headers)
        return caller


def rate_limited_caller(bucket: str) -> Callable[..., Awaitable[Caller]]:
    """FastAPI dependency: the verified caller, rate limited by `bucket` (see above)."""
    return _RateLimitedCaller(bucket)


# The caller of a route, rate limited by the bucket its kind of request pays from.
ExecuteCaller = Annotated[Caller, Depends(rate_limited_caller("execute"))]
WriteCaller = Annotated[Caller, Depends(rate_limited_caller("write"))]
ReadCaller = Annotated[Caller, Depends(rate_limited_caller("read"))]


# --------------------------------------------------------------------------------------------
# OpenAPI: every error response is problem+json
# --------------------------------------------------------------------------------------------

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
# Codes any operation may answer, by what it has: these come from the HTTP layer itself.
_EVERY_OPERATION = ("invalid_content_length", "validation_failed", "rate_limited",
                    "internal_error", "database_unavailable", "database_busy")
_WITH_TOKEN = ("missing_token", "invalid_token", "token_expired", "unknown_user",
               "jwks_unavailable")
_WITH_BODY = ("malformed_json", "payload_too_large", "unsupported_media_type")


def _problem_content(codes: Iterable[str]) -> dict[str, Any]:
    """problem+json whose `code` is one of `codes` (all with the same status)."""
    enum = sorted(set(codes))
    schema = {"allOf": [dict(PROBLEM_REF), {"properties": {"code": {"enum": enum}}}]}
    return {PROBLEM_MEDIA_TYPE: {"schema": schema}}


def _codes_of(response: dict[str, Any]) -> list[str]:
    schema = response.get("content", {}).get(PROBLEM_MEDIA_TYPE, {}).get("schema", {})
    for part in schema.get("allOf", []):
        enum = part.get("properties", {}).get("code", {}).get("enum")
        if enum:
            return list(enum)
    return []


def problem_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the problem codes a route raises itself (`PROBLEM_CODES` names them);
    the codes of the HTTP layer (auth, body, rate limit, database) are added to every route."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(PROBLEM_CODES[code].status, []).append(code)
    return {status: {"description": _phrase(status), "content": _problem_content(found)}
            for status, found in sorted(by_status.items())}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make every documented error response problem+json, listing the codes it may carry.

    Idempotent; called on each app's schema and safe to call on a merged one.
    """
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem_schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in problem_schema.pop("$defs", {}).items():
        schemas[name] = definition
    problem_schema["properties"]["code"]["enum"] = sorted(PROBLEM_CODES)
    schemas["ProblemDetails"] = problem_schema
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _HTTP_METHODS:
                continue
            codes = list(_EVERY_OPERATION)
            if operation.get("security"):
                codes += _WITH_TOKEN
            if "requestBody" in operation:
                codes += _WITH_BODY
            responses: dict[str, Any] = operation.setdefault("responses", {})
            by_status: dict[str, set[str]] = {}
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    by_status.setdefault(status, set()).update(_codes_of(response))
            for code in codes:
                by_status.setdefault(str(PROBLEM_CODES[code].status), set()).add(code)
            for status, found in by_status.items():
                listed = ", ".join(f"`{c}`" for c in sorted(found))
                responses[status] = {"description": f"{_phrase(int(status))}: {listed}",
                                     "content": _problem_content(found)}
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
        # no OpenTelemetry here: FastAPI would otherwise ask the global providers on every
        # request whether any is configured
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.aef_settings = settings
    app.state.aef_claims_check = claims_check
    app.add_exception_handler(AefError, _aef_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)

    # add_middleware prepends: the last added is the outermost.
    app.add_middleware(BodyGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CorsMiddleware, policy=OriginPolicy(tuple(settings.cors_origins)))
    app.add_middleware(RequestContextMiddleware)

    for router in routers:
        if router.prefix or router.dependencies or router.tags or router.responses:
            app.include_router(router)
        else:
            # a plain router's routes go onto the app itself: FastAPI matches the routes of an
            # included router through a per-request context layer (~0.1 ms a request)
            app.router.routes.extend(router.routes)
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

    from aef import snapshot

    handler = Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "+json"])
    snapshot.install(app, handler)  # SnapStart's hooks, where Lambda takes snapshots
    return handler
