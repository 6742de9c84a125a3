"""Secrets by reference (moto's Secrets Manager): a process configured with secret ARNs reads
exactly those secrets once and holds the values; plain settings still work without AWS."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from aef.secrets import SecretUnavailable, region_of, resolve_secrets
from aef.settings import Settings
from tests.deploy.aws import process_env, secretsmanager_server

DB_URL = "postgresql://aef_functions.abcd:s3cret-pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres"
JWT = "legacy-hs256-secret-0123456789abcdef0123456789"
LISTEN_URL = "postgresql://aef_runner_login.abcd:pw@aws-0-eu-west-1.pooler.supabase.com:5432/postgres"


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")


def arn(client: Any, name: str, value: str) -> str:
    """A new secret (unique name: another test's moto session may still be active)."""
    unique = f"{name}-{uuid.uuid4().hex[:8]}"
    return str(client.create_secret(Name=unique, SecretString=value)["ARN"])


def counting(client: Any) -> list[str]:
    """The SecretIds of every GetSecretValue the client sends."""
    asked: list[str] = []
    client.meta.events.register("provide-client-params.secrets-manager.GetSecretValue",
                                lambda params, **_: asked.append(params["SecretId"]))
    return asked


def test_configured_arns_become_values_read_once_each(secretsmanager: Any) -> None:
    db_arn = arn(secretsmanager, "aef/functions-db", DB_URL)
    jwt_arn = arn(secretsmanager, "aef/jwt", JWT)
    listen_arn = arn(secretsmanager, "aef/runner-listen", LISTEN_URL)
    arn(secretsmanager, "someone-elses-secret", "not ours")
    asked = counting(secretsmanager)
    settings = Settings(database_url_secret_arn=db_arn, jwt_secret_arn=jwt_arn,
                        db_listen_url_secret_arn=listen_arn)
    resolved = resolve_secrets(settings, client=secretsmanager)
    assert resolved.database_url == DB_URL
    assert resolved.jwt_secret is not None and resolved.jwt_secret.get_secret_value() == JWT
    assert resolved.db_listen_url == LISTEN_URL
    assert sorted(asked) == sorted([db_arn, jwt_arn, listen_arn])  # exactly those, once each
    assert JWT not in repr(resolved)  # SecretStr


def test_a_process_configured_by_arn_reads_its_secret_once_at_start(tmp_path: Any) -> None:
    """A fresh process (as a Lambda sandbox or a task starts) with only the ARN in its
    environment: get_settings() holds the value, read with one GetSecretValue."""
    with secretsmanager_server() as (endpoint, client):
        db_arn = arn(client, "aef/functions-db", DB_URL)
        env = process_env(endpoint, AEF_DATABASE_URL_SECRET_ARN=db_arn)
        code = ("import sys; from aef.settings import get_settings; "
                "first = get_settings(); assert get_settings() is first; "
                "print(first.database_url)")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == DB_URL


def test_a_missing_or_empty_secret_refuses_to_start(secretsmanager: Any) -> None:
    missing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:aef/nope-AbCdEf"
    with pytest.raises(SecretUnavailable, match="ResourceNotFoundException"):
        resolve_secrets(Settings(database_url_secret_arn=missing), client=secretsmanager)
    binary = str(secretsmanager.create_secret(Name=f"aef/binary-{uuid.uuid4().hex[:8]}",
                                              SecretBinary=b"\x00")["ARN"])
    with pytest.raises(SecretUnavailable, match="no SecretString"):
        resolve_secrets(Settings(database_url_secret_arn=binary), client=secretsmanager)


def test_the_client_is_made_for_the_secrets_region(secretsmanager: Any) -> None:
    us = boto3.client("secretsmanager", region_name="us-west-2")
    db_arn = arn(us, "aef/db", DB_URL)
    assert region_of(db_arn) == "us-west-2"
    # the settings say eu-west-1; the secret lives in us-west-2 and is still found
    resolved = resolve_secrets(Settings(aws_region="eu-west-1", database_url_secret_arn=db_arn))
    assert resolved.database_url == DB_URL


def test_plain_settings_need_no_aws_at_all() -> None:
    """Locally and in tests: no ARN, no boto3 import, the values as given."""
    code = ("import sys; from aef.secrets import resolve_secrets; from aef.settings import "
            "Settings; s = resolve_secrets(Settings(database_url='postgresql://x@h/d')); "
            "assert s.database_url == 'postgresql://x@h/d'; "
            "assert 'boto3' not in sys.modules, 'boto3 imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
