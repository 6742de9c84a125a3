"""Runner launchers: ECS `run_task` on AWS (Fargate), a subprocess locally.

The launch happens after the execution is committed `queued`; a failure here is reported to
the caller, which marks the execution `failed` with a `retry` option — never stuck queued.
Locally the runner token travels in the child's environment (never on a command line); an
ECS task gets no token at all: it proves its identity with its own task ARN
(`runner/identity.py`), so nothing secret is visible to `ecs:DescribeTasks` or CloudTrail.
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aef.deadline import seconds_left
from aef.settings import Settings, get_settings

log = logging.getLogger("aef.launcher")


class LaunchFailed(Exception):
    """The runner could not be started. `str()` is safe to show to the user (no ARN, no
    account id); `code` is a stable reason (e.g. an AWS error code); the raw detail is only
    in the operator's log."""

    def __init__(self, message: str, code: str = "launch_failed") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Launch:
    task_arn: str


class Launcher(Protocol):
    def launch(self, execution_id: str, runner_token: str) -> Launch: ...

    def stop(self, task_arn: str, reason: str) -> bool:
        """Force-stop a runner; True if something was stopped."""
        ...


# AWS error codes worth another attempt: throttling and the service's own trouble.
_RETRYABLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException",
    "ServerException", "ServiceUnavailableException", "InternalFailure", "ServiceUnavailable",
})
_SAFE_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 5.0  # RunTask answers in well under a second when ECS is healthy
ATTEMPT_SECONDS = CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS  # worst case of one call


def aws_error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore error (never its message, which names ARNs)."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    code = str(code) if code else type(exc).__name__
    return code if _SAFE_CODE.match(code) else type(exc).__name__


def _retryable(exc: BaseException) -> bool:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True  # the request may have gone through: the client token makes a retry safe
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return aws_error_code(exc) in _RETRYABLE_CODES or int(status) >= 500


class EcsLauncher:
    """A Fargate task per execution; only the execution id goes in the container overrides."""

    def __init__(self, settings: Settings, client: Any | None = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._client = client
        self._sleep = sleep  # tests pass a fake clock and sleep to observe the schedule
        self._clock = clock

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # lazy: keeps cold starts of the read-only functions fast
            from botocore.config import Config

            # One attempt per call: `launch` retries itself, within the time the Lambda has.
            self._client = boto3.client(
                "ecs", region_name=self.settings.aws_region,
                endpoint_url=self.settings.aws_endpoint_url,
                config=Config(retries={"total_max_attempts": 1},
                              connect_timeout=CONNECT_TIMEOUT_SECONDS,
                              read_timeout=READ_TIMEOUT_SECONDS))
        return self._client

    def launch(self, execution_id: str, runner_token: str) -> Launch:
        """RunTask, retried with jittered backoff while throttled, and never past the time
        the invocation has left (minus what the caller needs to record the outcome)."""
        s = self.settings
        request = {
            "cluster": s.ecs_cluster,
            "taskDefinition": s.ecs_task_definition,
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": f"aef-{execution_id[:26]}",
            # the same token on every attempt: a retry after a lost answer starts no 2nd task
            "clientToken": uuid.uuid4().hex,
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": s.ecs_subnets,
                "securityGroups": s.ecs_security_groups,
                "assignPublicIp": "ENABLED" if s.ecs_assign_public_ip else "DISABLED",
            }},
            "overrides": {"containerOverrides": [{
                "name": s.ecs_container_name,
                "environment": [{"name": "AEF_EXECUTION_ID", "value": execution_id}],
            }]},
            "tags": [{"key": "aef:execution", "value": execution_id}],
        }
        if not self._accepts_client_token():  # an older botocore (the Lambda runtime's)
            del request["clientToken"]  # a duplicate task could not claim: it exits at once
        deadline = self._clock() + seconds_left(s.launch_time_budget_seconds) \
            - s.launch_reserve_seconds
        attempt = 0
        while True:
            if deadline - self._clock() < ATTEMPT_SECONDS:
                raise self._failed(execution_id, "launch_timeout", "no time left for RunTask",
                                   attempt)
            attempt += 1
            try:
                response = self.client.run_task(**request)
                break
            except Exception as exc:  # botocore errors: throttling, bad config, no capacity
                code = aws_error_code(exc)
                if not _retryable(exc):
                    raise self._failed(execution_id, code, str(exc), attempt) from exc
                pause = random.uniform(0, min(4.0, 0.25 * 2 ** attempt))
                if deadline - self._clock() - pause < ATTEMPT_SECONDS:
                    raise self._failed(execution_id, code, str(exc), attempt) from exc
                log.info("RunTask retried", extra={"executionId": execution_id,
                                                   "awsErrorCode": code, "attempt": attempt})
                self._sleep(pause)
        failures = response.get("failures") or []
        tasks = response.get("tasks") or []
        if failures or not tasks:
            reason = str(failures[0].get("reason", "")) if failures else "no task started"
            code = reason if _SAFE_CODE.match(reason) else "RunTaskFailure"
            raise self._failed(execution_id, code, str(failures or "no task"), attempt)
        return Launch(task_arn=tasks[0]["taskArn"])

    def _accepts_client_token(self) -> bool:
        shape = self.client.meta.service_model.operation_model("RunTask").input_shape
        return "clientToken" in shape.members

    @staticmethod
    def _failed(execution_id: str, code: str, detail: str, attempts: int) -> LaunchFailed:
        """The detail (ARNs, account id) goes to the operator's log; the user gets the code."""
        log.warning("runner launch failed", extra={
            "executionId": execution_id, "awsErrorCode": code, "awsError": detail,
            "attempts": attempts})
        return LaunchFailed(f"The runner could not be started (ECS: {code})", code=code)

    def stop(self, task_arn: str, reason: str) -> bool:
        try:
            self.client.stop_task(cluster=self.settings.ecs_cluster, task=task_arn,
                                  reason=reason[:255])
        except Exception as exc:  # already gone, or never existed
            log.info("StopTask refused", extra={"awsErrorCode": aws_error_code(exc)})
            return False
        return True


class LocalLauncher:
    """`python -m runner` as a detached subprocess of this machine (the local stack).

    Each runner gets a thread that waits for it, so a finished runner is reaped at once
    (never left `<defunct>`) and only runners still running are ever signalled.
    """

    def __init__(self, settings: Settings, log_dir: Path | None = None,
                 database_url: str | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        # the runners' login (aef_runner_login on the local stack); default: the functions'
        self.database_url = database_url or settings.database_url
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def launch(self, execution_id: str, runner_token: str) -> Launch:
        env = dict(os.environ)
        env.update({"AEF_EXECUTION_ID": execution_id, "AEF_RUNNER_TOKEN": runner_token,
                    "DATABASE_URL": self.database_url})
        out: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"runner-{execution_id}.log").open("ab")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runner"], env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
        except OSError as exc:
            raise LaunchFailed(f"could not start the local runner: {exc.strerror}") from exc
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        with self._lock:
            self._running[proc.pid] = proc
        threading.Thread(target=self._reap, args=(proc,), name=f"reap-runner-{proc.pid}",
                         daemon=True).start()
        return Launch(task_arn=f"local:{proc.pid}")

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        with self._lock:
            self._running.pop(proc.pid, None)

    def running(self) -> list[int]:
        """Pids of the runners launched here that have not exited."""
        with self._lock:
            return list(self._running)

    def _signal(self, pid: int, sig: signal.Signals) -> bool:
        """Signal a runner's process group, only while it is one of ours and running: an
        exited runner's pid may belong to someone else once it is reaped."""
        with self._lock:
            proc = self._running.get(pid)
            if proc is None or proc.returncode is not None:
                return False
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                return False
        return True

    def stop(self, task_arn: str, reason: str) -> bool:
        if not task_arn.startswith("local:"):
            return False
        return self._signal(int(task_arn.split(":", 1)[1]), signal.SIGKILL)

    def stop_all(self, grace_seconds: float) -> int:
        """Stop every runner still running: SIGTERM (each unwinds and writes its final state),
        SIGKILL for those still there after `grace_seconds`; returns how many were running."""
        pids = [pid for pid in self.running() if self._signal(pid, signal.SIGTERM)]
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and set(pids) & set(self.running()):
            time.sleep(0.05)
        for pid in pids:
            self._signal(pid, signal.SIGKILL)
        return len(pids)


POOL_ARN_PREFIX = "pool:"


class PoolLauncher:
    """Dispatch to live pool workers with a free slot (`python -m runner --pool`), else the
    fallback launcher (RunTask / a subprocess) for the burst beyond the pool.

    The pool path passes no token: the worker that claims the execution gets a fresh one from
    the database (`aef_private.claim_for_pool`). A stop never stops a pool task (it serves
    other executions): the worker's engine sees `cancelling` itself.
    """

    def __init__(self, fallback: Launcher, database: Callable[[], Any] | None = None) -> None:
        self.fallback = fallback
        self._database = database

    def _db(self) -> Any:
        if self._database is not None:
            return self._database()
        from aef.db import get_database

        return get_database()

    def dispatch(self, execution_id: str) -> bool:
        from aef.errors import AefError
        from aef.store import api as api_store

        try:
            with self._db().as_service() as conn:
                return api_store.dispatch_to_pool(conn, execution_id)
        except AefError as exc:  # the pool cannot be asked: start a task of its own
            log.warning("pool dispatch failed", extra={"executionId": execution_id,
                                                       "code": exc.code})
            return False

    def launch(self, execution_id: str, runner_token: str) -> Launch:
        if self.dispatch(execution_id):
            return Launch(task_arn=POOL_ARN_PREFIX)
        return self.fallback.launch(execution_id, runner_token)

    def stop(self, task_arn: str, reason: str) -> bool:
        if task_arn.startswith(POOL_ARN_PREFIX):
            return False
        return self.fallback.stop(task_arn, reason)

    def __getattr__(self, name: str) -> Any:  # running() / stop_all() of a local fallback
        return getattr(self.fallback, name)


_launcher: Launcher | None = None


def get_launcher() -> Launcher:
    global _launcher
    if _launcher is None:
        s = get_settings()
        fallback: Launcher = EcsLauncher(s) if s.launcher == "ecs" else LocalLauncher(s)
        _launcher = PoolLauncher(fallback) if s.use_pool else fallback
    return _launcher


def set_launcher(launcher: Launcher | None) -> None:
    """Tests and the local stack choose the backend explicitly."""
    global _launcher
    _launcher = launcher
