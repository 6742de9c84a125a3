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
    """`python -m runner` as a detached subprocess of this machine (the local stack)."""

    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir

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
        return Launch(task_arn=f"local:{proc.pid}")

    def stop(self, task_arn: str, reason: str) -> bool:
        if not task_arn.startswith("local:"):
            return False
        pid = int(task_arn.split(":", 1)[1])
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return False
        return True


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
