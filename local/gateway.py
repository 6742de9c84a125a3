"""A local API Gateway (HTTP API, payload format 2.0) in front of the functions' Lambda handlers.

The route table is read from `template.yaml`: every `AWS::Serverless::Function` event of type
`HttpApi` gives a route (`Method` + `Path`) and the function's `CodeUri` + `Handler` name the
Python callable. A request is turned into the event API Gateway would send, the function's
Mangum `handler(event, context)` is called in a worker thread, and its response dict becomes
the HTTP response. So the local path *is* the Lambda path: nothing is mounted as ASGI directly.

Route selection follows API Gateway: the most specific route wins (literal segments over
`{param}` over `{proxy+}`, a specific method over `ANY`). A request no route matches gets
problem+json in AEF's error format, where API Gateway would send its own `{"message":"Not
Found"}`: 405 with `Allow` when the path has routes for other methods, else 404. CORS
preflight requests are answered from the HttpApi's `CorsConfiguration`, as API Gateway does,
before any function (a refused one is logged with its origin), and every response carries
the configured CORS headers in place of the function's.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aef.http import OriginPolicy, log_refused_preflight, problem_response

log = logging.getLogger("aef.gateway")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload quota
DEFAULT_TIMEOUT_SECONDS = 3  # Lambda's default function timeout
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})
_PARAM = re.compile(r"^\{([A-Za-z0-9_.\-]+)(\+?)\}$")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class TemplateError(ValueError):
    """template.yaml does not describe routes this gateway can serve."""


# --------------------------------------------------------------------------------------------
# template.yaml
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CfnTag:
    """A CloudFormation short-form intrinsic (`!Ref X`, `!Sub ...`), kept unevaluated."""

    tag: str
    value: Any


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that accepts CloudFormation tags instead of failing on them."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> CfnTag:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return CfnTag("!" + suffix, value)


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse a SAM/CloudFormation template, keeping intrinsic functions as `CfnTag`s."""
    document = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    return document


@dataclass(frozen=True)
class RouteSpec:
    """One HttpApi route of the template and the Lambda handler it invokes."""

    method: str  # GET, POST, ..., or ANY
    path: str  # /api/aef/logs/{executionId}, or $default
    function: str  # the function's logical id in the template
    module: str  # dotted module of the handler, importable from the repo root
    attribute: str  # the handler's name in that module
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


def _literal(value: Any) -> Any:
    """A template value usable as is (intrinsics such as !Ref cannot be resolved locally)."""
    return None if isinstance(value, CfnTag) else value


def handler_module(code_uri: str, handler: str, root: Path) -> tuple[str, str]:
    """`CodeUri: functions/logs/` + `Handler: app.handler` -> (`functions.logs.app`, `handler`).

    Lambda imports the handler's module from the package root (CodeUri); locally the repo
    root is on sys.path, so the module is that file's dotted path relative to the repo.
    """
    module_part, _, attribute = handler.rpartition(".")
    if not module_part or not attribute:
        raise TemplateError(f"Handler '{handler}' is not '<module>.<function>'")
    base = (root / code_uri).resolve()
    module_file = base / (module_part.replace(".", "/") + ".py")
    if not module_file.is_file():
        raise TemplateError(f"Handler '{handler}' with CodeUri '{code_uri}': "
                            f"{module_file} does not exist")
    try:
        relative = module_file.relative_to(root.resolve())
    except ValueError as exc:
        raise TemplateError(f"CodeUri '{code_uri}' is outside the repository") from exc
    return ".".join(relative.with_suffix("").parts), attribute


def routes_from_template(template: Mapping[str, Any], root: Path = ROOT) -> list[RouteSpec]:
    """Every HttpApi event of every serverless function, in template order."""
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    routes: list[RouteSpec] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        events = props.get("Events") or {}
        http_events = [e for e in events.values()
                       if isinstance(e, dict) and e.get("Type") == "HttpApi"]
        if not http_events:
            continue
        code_uri = _literal(props.get("CodeUri", globals_fn.get("CodeUri")))
        handler = _literal(props.get("Handler", globals_fn.get("Handler")))
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            raise TemplateError(f"{logical_id}: CodeUri and Handler must be plain strings")
        module, attribute = handler_module(code_uri, handler, root)
        timeout = _literal(props.get("Timeout", globals_fn.get("Timeout")))
        for event in http_events:
            eprops = event.get("Properties") or {}
            path = _literal(eprops.get("Path", "$default"))
            method = _literal(eprops.get("Method", "ANY"))
            if not isinstance(path, str) or not isinstance(method, str):
                raise TemplateError(f"{logical_id}: HttpApi Path and Method must be strings")
            method = method.upper()
            if method == "*":
                method = "ANY"
            if method not in _METHODS:
                raise TemplateError(f"{logical_id}: unknown method {method}")
            if path != "$default" and not path.startswith("/"):
                raise TemplateError(f"{logical_id}: path {path} must start with /")
            routes.append(RouteSpec(method, path, str(logical_id), module, attribute,
                                    int(timeout) if isinstance(timeout, int)
                                    else DEFAULT_TIMEOUT_SECONDS))
    keys = [r.route_key for r in routes]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise TemplateError(f"routes defined twice: {', '.join(duplicates)}")
    return routes


@dataclass(frozen=True)
class CorsPolicy:
    """The HttpApi's CorsConfiguration: API Gateway answers preflight requests itself and
    puts its own CORS headers on every response (it ignores the function's)."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    def allows(self, origin: str) -> bool:
        """Exact origins as API Gateway matches them, plus AEF's local `*` patterns
        (`http://localhost:*`), which only the local stack uses."""
        return OriginPolicy(self.allow_origins).allows(origin)


def _strings(value: Any) -> tuple[str, ...] | None:
    value = _literal(value)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def cors_from_template(template: Mapping[str, Any],
                       origins: Iterable[str] = ()) -> CorsPolicy | None:
    """The first HttpApi's CorsConfiguration; origins the template takes from a parameter
    (`!Ref CorsOrigins`) cannot be resolved locally and come from `origins` instead."""
    for resource in (template.get("Resources") or {}).values():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::HttpApi":
            continue
        config = (resource.get("Properties") or {}).get("CorsConfiguration")
        if not isinstance(config, dict):
            continue
        max_age = _literal(config.get("MaxAge"))
        return CorsPolicy(
            allow_origins=_strings(config.get("AllowOrigins")) or tuple(origins),
            allow_methods=tuple(m.upper() for m in _strings(config.get("AllowMethods"))
                                or CorsPolicy.allow_methods),
            allow_headers=tuple(h.lower() for h in _strings(config.get("AllowHeaders")) or ()),
            expose_headers=_strings(config.get("ExposeHeaders")) or (),
            max_age=max_age if isinstance(max_age, int) else None,
            allow_credentials=_literal(config.get("AllowCredentials")) is True,
        )
    return None


def scheduled_functions(template: Mapping[str, Any],
                        root: Path = ROOT) -> list[tuple[str, str, str]]:
    """(logical id, module, attribute) of every function with a Schedule event (the sweeper)."""
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    found = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        events = (props.get("Events") or {}).values()
        if not any(isinstance(e, dict) and e.get("Type") in ("Schedule", "ScheduleV2")
                   for e in events):
            continue
        code_uri = _literal(props.get("CodeUri", globals_fn.get("CodeUri")))
        handler = _literal(props.get("Handler", globals_fn.get("Handler")))
        if isinstance(code_uri, str) and isinstance(handler, str):
            found.append((str(logical_id), *handler_module(code_uri, handler, root)))
    return found


# --------------------------------------------------------------------------------------------
# Route matching
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    spec: RouteSpec
    pattern: re.Pattern[str] | None  # None: $default
    params: tuple[str, ...]
    rank: tuple[int, int, int, int]  # higher is more specific


def _compile(spec: RouteSpec) -> _Compiled:
    if spec.path == "$default":
        return _Compiled(spec, None, (), (-1, 0, 0, 0))
    parts: list[str] = []
    params: list[str] = []
    literals = variables = 0
    greedy = False
    segments = spec.path.strip("/").split("/") if spec.path != "/" else []
    for index, segment in enumerate(segments):
        match = _PARAM.match(segment)
        if match is None:
            literals += 1
            parts.append(re.escape(segment))
            continue
        name, plus = match.groups()
        params.append(name)
        group = f"p{len(params) - 1}"
        if plus:
            if index != len(segments) - 1:
                raise TemplateError(f"{spec.path}: a greedy {{{name}+}} must be last")
            greedy = True
            parts.append(f"(?P<{group}>.+)")
        else:
            variables += 1
            parts.append(f"(?P<{group}>[^/]+)")
    regex = "^/" + "/".join(parts) + "$"
    rank = (0 if greedy else 1, literals, -variables, 0 if spec.method == "ANY" else 1)
    return _Compiled(spec, re.compile(regex), tuple(params), rank)


class RouteTable:
    """Matches (method, path) to a route the way API Gateway HTTP APIs do."""

    def __init__(self, routes: Iterable[RouteSpec]) -> None:
        self.routes = list(routes)
        self._compiled = [_compile(r) for r in self.routes]

    def match(self, method: str, path: str) -> tuple[RouteSpec, dict[str, str]] | None:
        best: tuple[_Compiled, dict[str, str]] | None = None
        method = method.upper()
        for compiled in self._compiled:
            if compiled.spec.method not in ("ANY", method):
                continue
            if compiled.pattern is None:
                params: dict[str, str] | None = {}
            else:
                found = compiled.pattern.match(path)
                params = ({name: unquote(found.group(f"p{i}"))
                           for i, name in enumerate(compiled.params)} if found else None)
            if params is None:
                continue
            if best is None or compiled.rank > best[0].rank:
                best = (compiled, params)
        return (best[0].spec, best[1]) if best else None

    def methods_for(self, path: str) -> list[str]:
        """The methods of the routes whose path matches (for a 405's `Allow` header)."""
        return sorted({c.spec.method for c in self._compiled
                       if c.pattern is not None and c.pattern.match(path)})


# --------------------------------------------------------------------------------------------
# Events and the Lambda context
# --------------------------------------------------------------------------------------------


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and adapters read."""

    function_name: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return (media.startswith("text/") or media.endswith(("/json", "+json", "/xml", "+xml"))
            or media in ("application/x-www-form-urlencoded", "application/javascript"))


def build_event(
    scope: Scope,
    body: bytes,
    spec: RouteSpec,
    path_params: Mapping[str, str],
    *,
    request_id: str,
    api_id: str = "local",
) -> dict[str, Any]:
    """The HTTP API v2 event API Gateway would send for this request."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in scope.get("headers") or []:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    query_string = (scope.get("query_string") or b"").decode("latin-1")
    query: dict[str, str] = {}
    for pair in filter(None, query_string.split("&")):
        key, _, value = pair.partition("=")
        key, value = unquote(key.replace("+", " ")), unquote(value.replace("+", " "))
        query[key] = f"{query[key]},{value}" if key in query else value
    host = headers.get("host", "localhost")
    client = scope.get("client") or ("127.0.0.1", 0)
    method = scope["method"].upper()
    now = time.time()
    raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    raw_path = raw_path.split("?", 1)[0]
    headers.setdefault("x-forwarded-for", str(client[0]))
    headers.setdefault("x-forwarded-proto", scope.get("scheme", "http"))
    port = (scope.get("server") or ("", None))[1]  # None when the client gave no port
    headers.setdefault("x-forwarded-port",
                       str(port or (443 if scope.get("scheme") == "https" else 80)))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": spec.route_key,
        "rawPath": raw_path,
        "rawQueryString": query_string,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": method,
                "path": scope["path"],
                "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
                "sourceIp": str(client[0]),
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": spec.route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = dict(path_params)
    if body:
        if _is_text(headers.get("content-type")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def to_response(result: Mapping[str, Any], request_id: str) -> Response:
    """A Lambda proxy response dict (format 2.0) as an HTTP response."""
    status = int(result.get("statusCode", 200))
    body_text = result.get("body") or ""
    body = (base64.b64decode(body_text) if result.get("isBase64Encoded")
            else str(body_text).encode())
    response = Response(body, status_code=status)
    raw: list[tuple[bytes, bytes]] = []
    for name, value in (result.get("headers") or {}).items():
        if name.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        raw.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        raw.extend((name.lower().encode("latin-1"), str(v).encode("latin-1")) for v in values)
    for cookie in result.get("cookies") or []:
        raw.append((b"set-cookie", str(cookie).encode("latin-1")))
    raw.append((b"apigw-requestid", request_id.encode("latin-1")))
    raw.append((b"content-length", str(len(body)).encode()))
    response.raw_headers = raw
    return response


# --------------------------------------------------------------------------------------------
# The gateway (an ASGI app)
# --------------------------------------------------------------------------------------------


def _new_loop_for_thread() -> None:
    """Mangum drives each call with `asyncio.get_event_loop()`: give every worker one loop,
    as a Lambda execution environment has one, reused across warm invocations."""
    asyncio.set_event_loop(asyncio.new_event_loop())


class Gateway:
    """ASGI app: HTTP request -> v2 event -> Lambda handler (worker thread) -> HTTP response."""

    def __init__(self, routes: Iterable[RouteSpec], *, cors: CorsPolicy | None = None,
                 max_workers: int = 16) -> None:
        self.table = RouteTable(routes)
        self.cors = cors
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers,
                                        thread_name_prefix="aef-lambda",
                                        initializer=_new_loop_for_thread)

    @classmethod
    def from_template(cls, path: Path = TEMPLATE_PATH, root: Path = ROOT, *,
                      cors_origins: Iterable[str] = (), **options: Any) -> Gateway:
        return cls.for_template(load_template(path), root, cors_origins=cors_origins,
                                **options)

    @classmethod
    def for_template(cls, template: Mapping[str, Any], root: Path = ROOT, *,
                     cors_origins: Iterable[str] = (), **options: Any) -> Gateway:
        return cls(routes_from_template(template, root),
                   cors=cors_from_template(template, cors_origins), **options)

    @property
    def routes(self) -> list[RouteSpec]:
        return self.table.routes

    def handler_for(self, spec: RouteSpec) -> Handler:
        """Import the function's module once (a warm start), as Lambda does."""
        key = f"{spec.module}:{spec.attribute}"
        with self._lock:
            handler = self._handlers.get(key)
            if handler is None:
                module = importlib.import_module(spec.module)
                found = getattr(module, spec.attribute, None)
                if not callable(found):
                    raise TemplateError(f"{key} is not a callable handler")
                handler = self._handlers[key] = found
        return handler

    def load_all(self) -> None:
        """Import every handler now, so a broken function fails the start, not a request."""
        for spec in self.routes:
            self.handler_for(spec)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = base64.b64encode(uuid.uuid4().bytes[:12]).decode().rstrip("=")
        if self.cors is not None and scope["method"] == "OPTIONS":
            preflight = self._preflight(scope)
            if preflight is not None:
                await preflight(scope, receive, send)
                return
        matched = self.table.match(scope["method"], scope["path"])
        if matched is None:
            await self._cors_headers(self._no_route(scope), scope)(scope, receive, send)
            return
        spec, params = matched
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_PAYLOAD_BYTES:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if len(body) > MAX_PAYLOAD_BYTES:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        event = build_event(scope, bytes(body), spec, params, request_id=request_id)
        context = LambdaContext(function_name=spec.function, timeout_seconds=spec.timeout_seconds,
                                aws_request_id=str(uuid.uuid4()))
        try:
            handler = self.handler_for(spec)
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            result = await loop.run_in_executor(self._pool, handler, event, context)
            elapsed = time.monotonic() - started
            if elapsed > spec.timeout_seconds:
                log.warning("function exceeded its Lambda timeout",
                            extra={"function": spec.function, "seconds": round(elapsed, 2),
                                   "timeout": spec.timeout_seconds})
        except Exception:
            log.exception("lambda invocation failed", extra={"function": spec.function})
            response = problem_response(502, code="bad_gateway",
                                        detail="The function failed to produce a response",
                                        instance=scope["path"])
            await self._cors_headers(response, scope)(scope, receive, send)
            return
        await self._cors_headers(to_response(result, request_id), scope)(scope, receive, send)

    def _no_route(self, scope: Scope) -> Response:
        """405 with `Allow` when the path has routes for other methods, else 404."""
        method, path = scope["method"], scope["path"]
        allowed = self.table.methods_for(path)
        if allowed and "ANY" not in allowed:
            return problem_response(405, code="method_not_allowed",
                                    detail=f"{method} is not allowed on {path}", instance=path,
                                    headers={"Allow": ", ".join(allowed)})
        return problem_response(404, code="not_found", detail=f"No route for {method} {path}",
                                instance=path)

    def _cors_headers(self, response: Response, scope: Scope) -> Response:
        """API Gateway's CORS on a response: the configured headers replace the function's."""
        if self.cors is None:
            return response
        origin = Headers(scope=scope).get("origin")
        raw = [(k, v) for k, v in response.raw_headers
               if not k.startswith(b"access-control-") and k != b"vary"]
        if origin is not None and self.cors.allows(origin):
            raw.append((b"access-control-allow-origin", origin.encode("latin-1")))
            if self.cors.expose_headers:
                raw.append((b"access-control-expose-headers",
                            ",".join(self.cors.expose_headers).encode("latin-1")))
            if self.cors.allow_credentials:
                raw.append((b"access-control-allow-credentials", b"true"))
        raw.append((b"vary", b"Origin"))
        response.raw_headers = raw
        return response

    def _preflight(self, scope: Scope) -> Response | None:
        """A CORS preflight for a route that exists, answered as API Gateway does (204)."""
        assert self.cors is not None
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        wanted = (headers.get("access-control-request-method") or "").upper()
        if not origin or not wanted:
            return None
        if self.table.match(wanted, scope["path"]) is None:
            return None
        response = Response(status_code=204)
        requested = [h.strip().lower() for h in
                     (headers.get("access-control-request-headers") or "").split(",")
                     if h.strip()]
        allowed = [h for h in requested if "*" in self.cors.allow_headers
                   or h in self.cors.allow_headers]
        refused = [name for name, ok in (("origin", self.cors.allows(origin)),
                                         ("method", wanted in self.cors.allow_methods),
                                         ("headers", len(allowed) == len(requested))) if not ok]
        if refused:
            log_refused_preflight(origin, wanted, scope["path"], refused,
                                  headers.get("access-control-request-headers"))
        if "origin" not in refused and "method" not in refused:
            response.headers["access-control-allow-origin"] = origin
            response.headers["access-control-allow-methods"] = ",".join(self.cors.allow_methods)
            if allowed:
                response.headers["access-control-allow-headers"] = ",".join(allowed)
            if self.cors.max_age is not None:
                response.headers["access-control-max-age"] = str(self.cors.max_age)
            if self.cors.allow_credentials:
                response.headers["access-control-allow-credentials"] = "true"
            response.headers["vary"] = "Origin"
        return response

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, code="payload_too_large",
                                    detail="Request payloads are limited to 10 MB",
                                    instance=scope["path"])
        await self._cors_headers(response, scope)(scope, receive, send)
