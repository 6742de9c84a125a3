"""`python -m aef.openapi [--check]`: merge every function's OpenAPI into docs/openapi.json.

Each Lambda function is its own FastAPI app; clients (and schemathesis) want one document.
The merge is deterministic (sorted keys, fixed app list) so `--check` can fail CI when the
committed file is stale. A path+method or a component defined differently by two apps is an
error, never a silent overwrite.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aef import __version__

FUNCTION_APPS: tuple[str, ...] = (
    "functions.transform.app",
    "functions.execute.app",
    "functions.checkpoint.app",
    "functions.stop.app",
    "functions.logs.app",
)
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
TITLE = "AEF API"
DESCRIPTION = (
    "Agentic Execution Framework: turn an SOP into a supervised browser workflow, run it, "
    "answer its checkpoints, stop it and follow it live. Errors are RFC 9457 "
    "application/problem+json with a stable `code`."
)
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def load_specs(modules: Iterable[str] = FUNCTION_APPS) -> list[dict[str, Any]]:
    """Import each module, take its `app` (a FastAPI app) and return its OpenAPI document."""
    specs = []
    for name in modules:
        module = importlib.import_module(name)  # a missing app is an error, not a skip
        app = getattr(module, "app", None)
        if app is None or not callable(getattr(app, "openapi", None)):
            raise ValueError(f"{name} has no FastAPI `app`")
        specs.append(app.openapi())
    return specs


def merge_specs(
    specs: Sequence[dict[str, Any]],
    *,
    title: str = TITLE,
    version: str = __version__,
    description: str = DESCRIPTION,
) -> dict[str, Any]:
    """One OpenAPI 3.1 document from several; refuses duplicate operations and clashing schemas."""
    from aef.http import document_problems  # FastAPI import only when merging

    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, Any]] = {}
    operation_ids: dict[str, str] = {}
    for spec in specs:
        for path, item in spec.get("paths", {}).items():
            merged_item = paths.setdefault(path, {})
            for key, value in item.items():
                if key in merged_item and (key in _METHODS or merged_item[key] != value):
                    raise ValueError(f"{key.upper()} {path} is defined by more than one app")
                merged_item[key] = value
                op_id = value.get("operationId") if key in _METHODS else None
                if op_id:
                    if op_id in operation_ids:
                        raise ValueError(f"operationId {op_id} is used twice")
                    operation_ids[op_id] = f"{key.upper()} {path}"
        for section, entries in spec.get("components", {}).items():
            merged_section = components.setdefault(section, {})
            for name, value in entries.items():
                if name in merged_section and merged_section[name] != value:
                    raise ValueError(
                        f"components/{section}/{name} differs between apps; rename one"
                    )
                merged_section[name] = value
        for tag in spec.get("tags", []):
            tags.setdefault(tag["name"], tag)
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": dict(sorted(paths.items())),
        "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }
    if tags:
        merged["tags"] = [tags[name] for name in sorted(tags)]
    return document_problems(merged)


def render(spec: dict[str, Any]) -> str:
    """Canonical text: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aef.openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    text = render(merge_specs(load_specs()))
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if current != text:
            print(f"{output} is stale: run `python -m aef.openapi`", file=sys.stderr)
            return 1
        print(f"{output} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
