"""One Settings object for every function, the runner and the local stack (env prefix AEF_).

On AWS the secret values are not in the environment: `*_secret_arn` settings name Secrets
Manager secrets, and `get_settings()` reads them once per process (`aef.secrets`).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

_ORIGIN = re.compile(r"^\*$|^https?://[^/?#\s]+$")


def _text_list(value: Any) -> Any:
    """A list setting given as a JSON list or as comma-separated words (what people type)."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError("not valid JSON (give a JSON list or comma-separated values)"
                             ) from exc
    return value


def _origin_list(value: Any) -> Any:
    """`AEF_CORS_ORIGINS`: a JSON list or comma-separated origins.

    An origin is `scheme://host[:port]` with no path; `*` inside one stands for one host label
    or a port (`http://localhost:*`), and `*` alone for any origin.
    """
    value = _text_list(value)
    if not isinstance(value, list | tuple):
        return value
    origins = [o.rstrip("/") if isinstance(o, str) else o for o in value]
    bad = [o for o in origins if not isinstance(o, str) or not _ORIGIN.match(o)]
    if bad:
        raise ValueError(f"not a browser origin (scheme://host[:port]): {bad[0]!r}")
    return origins


OriginList = Annotated[list[str], NoDecode, BeforeValidator(_origin_list)]
TextList = Annotated[list[str], NoDecode, BeforeValidator(_text_list)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AEF_", env_file=None, extra="ignore")

    # Database: a libpq URL. Works through Supabase's transaction pooler (no prepared statements).
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        validation_alias="DATABASE_URL",
    )
    database_url_secret_arn: str | None = None  # on AWS: the secret holding DATABASE_URL
    db_pool_min: int = 0
    db_pool_max: int = 4
    db_max_idle_seconds: float = 60.0  # a pooler counts idle clients too: close them early
    # LISTEN needs a session (a direct or session-mode URL); a transaction pooler cannot carry
    # it. db_listen_url None = LISTEN on DATABASE_URL; db_listen False = poll only.
    db_listen: bool = True
    db_listen_url: str | None = None
    db_listen_url_secret_arn: str | None = None

    # Auth (Supabase JWTs).
    supabase_url: str = "http://127.0.0.1:54321"
    jwks_url: str | None = None  # default: {supabase_url}/auth/v1/.well-known/jwks.json
    jwt_secret: SecretStr | None = None  # legacy HS256 secret
    jwt_secret_arn: str | None = None  # on AWS: the secret holding jwt_secret
    jwt_audience: str = "authenticated"
    jwt_issuer: str | None = None
    jwks_cache_seconds: int = 600

    # HTTP.
    max_body_bytes: int = 1_048_576
    cors_origins: OriginList = []

    # Execution control.
    max_active_executions: int = 3
    rate_limit_capacity: int = 20  # starts (POST /execute)
    rate_limit_refill_per_second: float = 1.0
    write_rate_limit_capacity: int = 60  # other commands
    write_rate_limit_refill_per_second: float = 5.0
    read_rate_limit_capacity: int = 240  # logs and live polling
    read_rate_limit_refill_per_second: float = 20.0
    stop_ack_timeout_seconds: float = 5.0  # the runner finishes its current action first
    lease_seconds: int = 30
    heartbeat_seconds: float = 5.0

    # Launcher: "local" (subprocess) or "ecs".
    launcher: str = "local"
    ecs_cluster: str = "aef"
    ecs_task_definition: str = "aef-runner"
    ecs_container_name: str = "runner"
    ecs_subnets: TextList = []
    ecs_security_groups: TextList = []
    ecs_assign_public_ip: bool = False  # True only in public subnets without a NAT
    launch_time_budget_seconds: float = 20.0  # RunTask retries outside Lambda (no deadline)
    launch_reserve_seconds: float = 4.0  # kept for the writes after RunTask (task ARN, failure)
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None

    # Screenshots (S3 API: AWS S3, Supabase Storage S3 endpoint, or a moto server).
    screenshot_bucket: str = "aef-screenshots"
    screenshot_prefix: str = "executions/"
    s3_endpoint_url: str | None = None
    signed_url_seconds: int = 900

    # Runner.
    chromium_path: str | None = None
    headless: bool = True
    auto_retry_delay_seconds: float = 30.0
    # A checkpoint nobody answered (timeout action `pause`): how long the paused execution
    # keeps its browser before the runner releases it (resume then starts a new runner).
    checkpoint_pause_grace_seconds: float = Field(default=300.0, ge=0, le=3600)
    max_auto_retries: int = 2
    execution_time_limit_seconds: int = 3600
    allow_loopback: bool = False
    allow_private_networks: bool = False
    llm_resolver: str | None = None  # dotted path of an optional LLM-backed resolver
    grounding_threshold: float = 0.75
    max_loop_iterations: int = 100
    work_dir: str = "/tmp/aef-runner"  # noqa: S108 - per-task folder for uploads/downloads
    claim_wait_seconds: float = 30.0  # ECS: how long a runner waits for its task ARN to be stored

    # Runner pool (`python -m runner --pool`, docs/scaling.md).
    pool_slots: int = Field(default=4, ge=1, le=64)  # executions one worker runs at once
    pool_drain_seconds: float = 90.0  # SIGTERM: running executions get this long to finish
    use_pool: bool = True  # the launcher dispatches to live pool workers before run_task
    # `aef dev`: "pool" (one warm pool worker: the first step within a second) or "process"
    # (a subprocess per execution, as each Fargate task runs one).
    dev_runner: Literal["pool", "process"] = "pool"
    pool_metric_namespace: str | None = None  # the sweeper publishes pool demand here (AWS)

    @property
    def effective_jwks_url(self) -> str:
        return self.jwks_url or f"{self.supabase_url.rstrip('/')}/auth/v1/.well-known/jwks.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings are read once per process (a Lambda warm start reuses them), secrets included."""
    from aef.secrets import resolve_secrets

    return resolve_secrets(Settings())


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable a settings field is read from (AEF_X, or its alias)."""
    info = model.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        return alias
    return f"{model.model_config.get('env_prefix') or ''}{field}".upper()


def describe_invalid(exc: ValidationError | SettingsError,
                     model: type[BaseSettings] = Settings) -> str:
    """One line naming each missing or invalid setting by its variable (values are left out:
    some are secrets)."""
    if isinstance(exc, SettingsError):  # a list or dict setting that is not JSON
        found = re.search(r'field "(\w+)"', str(exc))
        name = env_name(model, found[1]) if found else "a setting"
        return f"{name}: not valid JSON"
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = env_name(model, field) if field else "settings"
        problems.append(f"{name} is not set" if error["type"] == "missing"
                        else f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)
