"""Runner launchers: ECS `run_task` on AWS (Fargate), a subprocess locally.

The launch happens after the execution is committed `queued`; a failure here is reported to
the caller, which marks the execution `failed` with a `retry` option — never stuck queued.
The runner token travels in the environment, never on a command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aef.settings import Settings, get_settings


class LaunchFailed(Exception):
    """The runner could not be started; the message is safe to show to the user."""


@dataclass(frozen=True)
class Launch:
    task_arn: str


class Launcher(Protocol):
    def launch(self, execution_id: str, runner_token: str) -> Launch: ...

    def stop(self, task_arn: str, reason: str) -> bool:
        """Force-stop a runner; True if something was stopped."""
        ...


class EcsLauncher:
    """Fargate task per execution; the execution id and token go in container overrides."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # lazy: keeps cold starts of the read-only functions fast
            from botocore.config import Config

            # RunTask is rate limited (a burst, then a steady rate): back off and retry
            # throttled launches instead of failing a user's start at the first refusal.
            self._client = boto3.client(
                "ecs", region_name=self.settings.aws_region,
                endpoint_url=self.settings.aws_endpoint_url,
                config=Config(retries={"mode": "adaptive", "max_attempts": 6},
                              connect_timeout=5, read_timeout=15))
        return self._client

    def launch(self, execution_id: str, runner_token: str) -> Launch:
        s = self.settings
        try:
            response = self.client.run_task(
                cluster=s.ecs_cluster,
                taskDefinition=s.ecs_task_definition,
                launchType="FARGATE",
                count=1,
                startedBy=f"aef-{execution_id[:26]}",
                networkConfiguration={"awsvpcConfiguration": {
                    "subnets": s.ecs_subnets,
                    "securityGroups": s.ecs_security_groups,
                    "assignPublicIp": "DISABLED",
                }},
                overrides={"containerOverrides": [{
                    "name": s.ecs_container_name,
                    "environment": [
                        {"name": "AEF_EXECUTION_ID", "value": execution_id},
                        {"name": "AEF_RUNNER_TOKEN", "value": runner_token},
                    ],
                }]},
                tags=[{"key": "aef:execution", "value": execution_id}],
            )
        except Exception as exc:  # botocore errors: throttling, bad config, no capacity
            raise LaunchFailed(
                f"ECS refused to start the runner: {type(exc).__name__}: {exc}") from exc
        failures = response.get("failures") or []
        tasks = response.get("tasks") or []
        if failures or not tasks:
            reason = failures[0].get("reason", "unknown") if failures else "no task started"
            raise LaunchFailed(f"ECS could not start the runner: {reason}")
        return Launch(task_arn=tasks[0]["taskArn"])

    def stop(self, task_arn: str, reason: str) -> bool:
        try:
            self.client.stop_task(cluster=self.settings.ecs_cluster, task=task_arn,
                                  reason=reason[:255])
        except Exception:  # already gone, or never existed
            return False
        return True


class LocalLauncher:
    """`python -m runner` as a detached subprocess of this machine (the local stack).

    Each runner gets a thread that waits for it, so a finished runner is reaped at once
    (never left `<defunct>`) and only runners still running are ever signalled.
    """

    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def launch(self, execution_id: str, runner_token: str) -> Launch:
        env = dict(os.environ)
        env.update({"AEF_EXECUTION_ID": execution_id, "AEF_RUNNER_TOKEN": runner_token,
                    "DATABASE_URL": self.settings.database_url})
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


_launcher: Launcher | None = None


def get_launcher() -> Launcher:
    global _launcher
    if _launcher is None:
        s = get_settings()
        _launcher = EcsLauncher(s) if s.launcher == "ecs" else LocalLauncher(s)
    return _launcher


def set_launcher(launcher: Launcher | None) -> None:
    """Tests and the local stack choose the backend explicitly."""
    global _launcher
    _launcher = launcher
