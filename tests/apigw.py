"""API Gateway HTTP API (payload format 2.0) events, for calling Mangum handlers in tests.

The event shape is what API Gateway sends a Lambda integration, so a test that goes through
`invoke(handler, apigw_event(...))` exercises the same path as production: event -> Mangum ->
ASGI middleware -> FastAPI -> response dict.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that adapters and loggers read."""

    function_name: str = "aef-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:aef-test"
    log_group_name: str = "/aws/lambda/aef-test"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def apigw_event(
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    query: Mapping[str, str] | None = None,
    path_params: Mapping[str, str] | None = None,
    route_key: str | None = None,
    content_length: bool = True,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An HTTP API v2 event.

    `body`: dict/list -> JSON (Content-Type defaults to application/json), str -> as is,
    bytes -> base64 with isBase64Encoded. `content_length=False` leaves the Content-Length
    header out, like a chunked upload would.
    """
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    raw: bytes | None
    if body is None:
        raw = None
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = json.dumps(body).encode()
        hdrs.setdefault("content-type", "application/json")
    if raw is not None and content_length:
        hdrs.setdefault("content-length", str(len(raw)))
    hdrs.setdefault("host", "abc123.execute-api.us-east-1.amazonaws.com")
    hdrs.setdefault("x-forwarded-proto", "https")
    hdrs.setdefault("user-agent", "aef-tests")
    now = time.time()
    rid = request_id or base64.b64encode(uuid.uuid4().bytes[:12]).decode()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key or f"{method.upper()} {path}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": hdrs["host"],
            "domainPrefix": "abc123",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": hdrs["user-agent"],
            },
            "requestId": rid,
            "routeKey": route_key or f"{method.upper()} {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if path_params:
        event["pathParameters"] = dict(path_params)
    if raw is not None:
        try:
            event["body"] = raw.decode()
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(raw).decode()
            event["isBase64Encoded"] = True
    return event


def ensure_event_loop() -> None:
    """Mangum runs on the calling thread's event loop, which a Lambda sandbox always has;
    in a test process an async test may have closed or unset it, or this is a worker thread."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
        if loop.is_closed():
            raise RuntimeError("closed")
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def invoke(handler: Handler, event: dict[str, Any], context: Any = None
           ) -> tuple[int, dict[str, str], Any]:
    """Call a Lambda handler; returns (status, lower-cased headers, parsed JSON body or text).

    An empty body gives None; a body that is not JSON is returned as a string. `context`
    defaults to a LambdaContext with 30 s left.
    """
    ensure_event_loop()
    result = handler(event, context or LambdaContext())
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    text = result.get("body") or ""
    if result.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    parsed: Any = None
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
    return int(result["statusCode"]), headers, parsed
