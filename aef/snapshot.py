"""Lambda SnapStart: what a function's snapshot holds, and what a restored sandbox renews.

With SnapStart on (template.yaml, parameter `FunctionSnapStart`), Lambda imports a function
once per published version, runs the before-snapshot hooks, snapshots the memory, and starts
every later sandbox by restoring that snapshot instead of importing again: a cold start no
longer pays for importing FastAPI, pydantic and psycopg. The hooks come from the
`snapshot_restore_py` library that Lambda's Python runtimes provide; elsewhere (locally, in a
runner) it is absent and nothing is registered.

Before the snapshot, one unauthenticated request runs through the handler (answered 401:
no secret, database or network is needed), so the routing, middleware, auth, error and JSON
paths are warm in the image. After a restore, everything a sandbox must not share with its
siblings or carry from the snapshot's time is renewed: secrets are read again (a rotated
secret reaches new sandboxes, as it does without SnapStart), the database pool, S3 client,
launcher and signing keys are dropped to be rebuilt on first use, and `random` is reseeded.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

log = logging.getLogger("aef.snapshot")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
_NIL_ID = "00000000-0000-0000-0000-000000000000"


def install(app: FastAPI, handler: Handler) -> bool:
    """Register the hooks when running where snapshots are taken; True if registered."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(warm, app, handler)
    register_after_restore(renew, app)
    return True


def warm(app: FastAPI, handler: Handler) -> int:
    """Serve one request without credentials to the app's first route; returns its status."""
    route = next(_api_routes(app.routes))
    method = sorted(route.methods or {"GET"})[0]
    path = route.path
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", _NIL_ID)
    now = time.time()
    headers = {"host": "snapshot.invalid", "user-agent": "aef-snapshot-warmup",
               "x-forwarded-proto": "https"}
    event = {
        "version": "2.0", "routeKey": f"{method} {route.path}", "rawPath": path,
        "rawQueryString": "", "headers": headers, "isBase64Encoded": False,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": headers["user-agent"]},
            "requestId": "snapshot-warmup", "routeKey": f"{method} {route.path}",
            "stage": "$default", "timeEpoch": int(now * 1000),
        },
    }
    status = int(handler(event, None)["statusCode"])
    log.info("warmed before the snapshot", extra={"path": route.path, "status": status})
    return status


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """The app's endpoints, through the routers it includes (FastAPI links them lazily)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(included.routes)


def renew(app: FastAPI) -> None:
    """After a restore: fresh secrets and settings, no shared clients, pool, keys or seed."""
    from aef.auth import default_jwks
    from aef.db import get_database, set_database
    from aef.launcher import set_launcher
    from aef.screenshots import set_screenshot_store
    from aef.settings import get_settings

    random.seed()  # from os.urandom: sandboxes restored from one image draw differently
    get_settings.cache_clear()
    app.state.aef_settings = get_settings()  # reads the secrets again
    get_database().close()  # never opened before the snapshot unless a hook used it
    set_database(None)
    set_screenshot_store(None)
    set_launcher(None)
    default_jwks.clear()
