"""Which execution this runner may act for: its runner token, given or claimed.

Locally the launcher hands the token over in the child's environment (AEF_RUNNER_TOKEN). On
ECS nothing secret is passed to the task: the runner reads its own task ARN from the task
metadata endpoint (ECS_CONTAINER_METADATA_URI_V4, reachable only from inside that task) and
exchanges it once for a fresh token (`aef_private.claim_by_task`), which checks the ARN the
launcher stored right after RunTask. From then on the token is used exactly as a given one.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable

from aef.db import Database
from aef.errors import ServiceUnavailable
from aef.store import runner as runner_store

log = logging.getLogger("aef.runner.identity")

METADATA_TIMEOUT_SECONDS = 2.0
CLAIM_INTERVAL_SECONDS = 0.5


class IdentityError(Exception):
    """The runner cannot prove which execution it runs; it must exit without working."""


def task_arn_from_metadata(base_uri: str, *, attempts: int = 3) -> str:
    """`TaskARN` from `${ECS_CONTAINER_METADATA_URI_V4}/task` (link-local, answers at once)."""
    url = base_uri.rstrip("/") + "/task"
    if not url.startswith(("http://", "https://")):
        raise IdentityError(f"the task metadata URI is not http(s): {base_uri!r}")
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=METADATA_TIMEOUT_SECONDS) as response:  # noqa: S310 - scheme checked above
                document = json.load(response)
            break
        except (OSError, ValueError) as exc:
            if attempt == attempts:
                raise IdentityError(f"the task metadata endpoint did not answer: {exc}") from exc
            time.sleep(0.2 * attempt)
    arn = document.get("TaskARN") if isinstance(document, dict) else None
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise IdentityError("the task metadata has no TaskARN")
    return arn


def claim_with_task_arn(db: Database, execution_id: str, task_arn: str, *,
                        wait_seconds: float,
                        sleep: Callable[[float], None] = time.sleep) -> str:
    """The execution's runner token, claimed with `task_arn`.

    The launcher stores the ARN just after RunTask answers, so a fast task may ask first:
    ask again every half second for `wait_seconds`, then give up.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            # role aef_runner without a token: it sees no row, it may only call the claim
            with db.as_runner(execution_id, "") as conn:
                token = runner_store.claim_by_task(conn, execution_id, task_arn)
        except ServiceUnavailable as exc:  # a database blip: same as "not yet"
            log.warning("claim by task ARN failed: %s", exc.detail)
            token = None
        if token:
            return token
        if time.monotonic() >= deadline:
            raise IdentityError("the execution could not be claimed with this task's ARN "
                                "(not this task's execution, already claimed, or not queued)")
        sleep(CLAIM_INTERVAL_SECONDS)


def runner_token(db: Database, execution_id: str, *, given: str | None,
                 metadata_uri: str | None, wait_seconds: float) -> str:
    """The given token (local launcher), else one claimed with the ECS task's ARN."""
    if given:
        return given
    if metadata_uri:
        return claim_with_task_arn(db, execution_id, task_arn_from_metadata(metadata_uri),
                                   wait_seconds=wait_seconds)
    raise IdentityError("AEF_RUNNER_TOKEN is not set and this is not an ECS task "
                        "(no ECS_CONTAINER_METADATA_URI_V4 to claim the execution with)")
