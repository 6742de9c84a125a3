"""Secrets by reference: `<name>_secret_arn` settings become `<name>` values, once per process.

On AWS the functions and the runner get only secret ARNs in their environment (nothing a
reader of the Lambda or task configuration could use); each process reads exactly those
secrets at init with its own role and keeps the values in memory. Locally and in tests the
plain settings (`DATABASE_URL`, `AEF_JWT_SECRET`, ...) still work and boto3 is never imported.
A rotated secret is picked up by every new Lambda sandbox (a SnapStart restore reads it again,
aef/snapshot.py) and every new runner task.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import SecretStr

from aef.settings import Settings

S = TypeVar("S", bound=Settings)

log = logging.getLogger("aef.secrets")

# setting holding the ARN -> setting receiving the value
SECRET_SETTINGS: dict[str, str] = {
    "database_url_secret_arn": "database_url",
    "db_listen_url_secret_arn": "db_listen_url",
    "jwt_secret_arn": "jwt_secret",
}


class SecretUnavailable(RuntimeError):
    """A configured secret could not be read (missing, no permission, no SecretString)."""


def region_of(arn: str) -> str | None:
    """`arn:aws:secretsmanager:<region>:<account>:secret:<name>` -> region (None if not an ARN)."""
    parts = arn.split(":")
    if len(parts) > 6 and parts[2] == "secretsmanager" and parts[3]:
        return parts[3]
    return None


def resolve_secrets(settings: S, client: Any | None = None) -> S:
    """`settings` with every configured secret ARN replaced by the secret's value.

    GetSecretValue is called on exactly the configured ARNs; a failure raises
    `SecretUnavailable` (the process cannot work without its database login).
    """
    wanted = {target: arn for source, target in SECRET_SETTINGS.items()
              if (arn := getattr(settings, source))}
    if not wanted:
        return settings
    values: dict[str, Any] = {}
    for target, arn in wanted.items():
        text = _read(client or _client(settings, arn), arn)
        values[target] = SecretStr(text) if target == "jwt_secret" else text
    return settings.model_copy(update=values)


def _client(settings: Settings, arn: str) -> Any:
    import boto3  # only processes configured with secret ARNs pay for the import
    from botocore.config import Config

    return boto3.client("secretsmanager", region_name=region_of(arn) or settings.aws_region,
                        endpoint_url=settings.aws_endpoint_url,
                        # bounded well inside Lambda's 10 s init phase
                        config=Config(retries={"mode": "standard", "max_attempts": 2},
                                      connect_timeout=2, read_timeout=3))


def _read(client: Any, arn: str) -> str:
    try:
        response = client.get_secret_value(SecretId=arn)
    except Exception as exc:  # botocore: AccessDenied, ResourceNotFound, KMS, network
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        log.error("secret could not be read", extra={"secretArn": arn, "errorCode": code})
        raise SecretUnavailable(f"the secret {arn} could not be read ({code})") from exc
    text = response.get("SecretString")
    if not isinstance(text, str) or not text.strip():
        raise SecretUnavailable(f"the secret {arn} has no SecretString")
    return text.strip()
