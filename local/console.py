"""Serves the operator console (console/ in the repo) at /console/ on the local stack.

The console is plain static files; the only things the stack adds are `config.json` (this
stack's Supabase URL, anon key and API base, what a deployment writes by hand) and the
supabase-js UMD bundle from console/node_modules (installed by npm, never a CDN).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
SUPABASE_UMD = CONSOLE_DIR / "node_modules" / "@supabase" / "supabase-js" / "dist" / "umd" \
    / "supabase.js"
PREFIX = "/console"


def console_config(supabase_url: str, anon_key: str) -> dict[str, str]:
    """What config.json holds: where the console finds Supabase and the AEF API."""
    return {"supabaseUrl": supabase_url, "anonKey": anon_key, "apiBase": supabase_url}


def create_console_app(supabase_url: str, anon_key: str) -> Starlette:
    config = console_config(supabase_url, anon_key)

    async def config_json(request: Request) -> Response:
        return JSONResponse(config, headers={"Cache-Control": "no-store"})

    async def supabase_js(request: Request) -> Response:
        if not SUPABASE_UMD.is_file():
            return PlainTextResponse(
                "console/node_modules is missing: run `npm ci` in console/ "
                "(scripts/bootstrap.sh does)", status_code=503)
        return FileResponse(SUPABASE_UMD, media_type="text/javascript")

    return Starlette(routes=[
        Route(f"{PREFIX}/config.json", config_json, methods=["GET"]),
        Route(f"{PREFIX}/vendor/supabase.js", supabase_js, methods=["GET"]),
        Mount(PREFIX, app=StaticFiles(directory=CONSOLE_DIR, html=True)),
    ])
