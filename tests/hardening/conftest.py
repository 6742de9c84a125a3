"""Hardening tests: the API fixtures of tests/api plus settings overrides and thread helpers.

The functions are called through their Mangum handlers (tests/apigw.py), against the real
throwaway Postgres and the moto ECS control plane, exactly like tests/api.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.api.conftest import (  # noqa: F401 - fixtures re-exported for this folder
    SECRET,
    Api,
    ApiUser,
    Reply,
    api,
    make_token,
    moto_ecs,
    new_user,
)

FUNCTION_MODULES = (
    "functions.transform.app",
    "functions.execute.app",
    "functions.checkpoint.app",
    "functions.stop.app",
    "functions.logs.app",
)


def _settings_objects() -> list[Any]:
    """Every distinct Settings object a request may read: get_settings() and each app's copy.

    An app keeps the object it was created with (`app.state.aef_settings`); if the lru cache
    was cleared after the import, that is a different object from get_settings().
    """
    import importlib

    from aef.settings import get_settings

    found: dict[int, Any] = {id(get_settings()): get_settings()}
    for name in FUNCTION_MODULES:
        app = importlib.import_module(name).app
        settings = getattr(app.state, "aef_settings", None)
        if settings is not None:
            found[id(settings)] = settings
    return list(found.values())


@contextmanager
def settings_override(**values: Any) -> Iterator[None]:
    """Set fields on every live Settings object and put the old values back afterwards."""
    objects = _settings_objects()
    saved = [(obj, {name: getattr(obj, name) for name in values}) for obj in objects]
    try:
        for obj in objects:
            for name, value in values.items():
                setattr(obj, name, value)
        yield
    finally:
        for obj, old in saved:
            for name, value in old.items():
                setattr(obj, name, value)


def thread_event_loop() -> None:
    """ThreadPoolExecutor initializer: Mangum runs the ASGI app on the thread's event loop.

    Mangum creates a loop only for the thread that built the handler (Lambda has one thread),
    so every worker thread of a test needs its own.
    """
    asyncio.set_event_loop(asyncio.new_event_loop())
