"""Local auth works as in the cloud: tokens signed by the stack's key, published as a JWKS.

Through the real stack (HTTP -> gateway -> Mangum handler -> aef.auth fetching the JWKS over
HTTP): a token from `aef token` is accepted; tokens signed by another key, HS256 tokens,
expired tokens, other issuers and unknown users are refused with 401.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt

from local.keys import SigningKey, load_or_create, mint_user_token
from tests.e2e.conftest import RunningStack, aef


def read_logs(stack: RunningStack, token: str) -> httpx.Response:
    """A call every user may make: the logs of an execution that is not theirs (-> 404)."""
    return httpx.get(f"{stack.url}/api/aef/logs/{uuid.uuid4()}",
                     headers={"Authorization": f"Bearer {token}"}, timeout=10)


def claims(stack: RunningStack, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": f"{stack.url}/auth/v1", "sub": stack.info.users["demo@aef.local"],
            "aud": "authenticated", "role": "authenticated", "email": "demo@aef.local",
            "iat": now, "exp": now + 600}
    base.update(overrides)
    return base


def test_jwks_publishes_the_public_key_only(stack: RunningStack, demo_token: str) -> None:
    document = httpx.get(f"{stack.url}/auth/v1/.well-known/jwks.json", timeout=5).json()
    [key] = document["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert "d" not in key
    assert jwt.get_unverified_header(demo_token)["kid"] == key["kid"]


def test_token_from_aef_token_is_accepted(stack: RunningStack, demo_token: str) -> None:
    payload = jwt.decode(demo_token, options={"verify_signature": False})
    assert payload["sub"] == stack.info.users["demo@aef.local"]
    assert payload["role"] == payload["aud"] == "authenticated"
    assert payload["iss"] == f"{stack.url}/auth/v1"
    assert payload["exp"] - payload["iat"] == 3600
    response = read_logs(stack, demo_token)
    assert response.status_code == 404, response.text  # authenticated; not their execution
    assert response.json()["code"] == "execution_not_found"


def test_second_dev_user_gets_a_token_too(stack: RunningStack) -> None:
    result = aef(stack.state, "token", "--user", "reviewer@aef.local")
    assert result.returncode == 0, result.stderr
    assert read_logs(stack, result.stdout.strip()).status_code == 404


def test_unknown_email_is_refused_by_the_cli(stack: RunningStack) -> None:
    result = aef(stack.state, "token", "--user", "nobody@example.com")
    assert result.returncode == 1
    assert "Unknown user" in result.stderr


def test_token_signed_by_another_key_is_refused(stack: RunningStack, demo_token: str) -> None:
    real_kid = jwt.get_unverified_header(demo_token)["kid"]
    impostor = SigningKey(SigningKey.generate().private_key, real_kid)  # same kid, other key
    response = read_logs(stack, impostor.sign(claims(stack)))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    stranger = SigningKey.generate()  # a key the JWKS does not know
    assert read_logs(stack, stranger.sign(claims(stack))).status_code == 401


def test_hs256_tokens_are_refused(stack: RunningStack) -> None:
    token = jwt.encode(claims(stack), "any-secret-at-all-0123456789abcdef", algorithm="HS256")
    response = read_logs(stack, token)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_expired_wrong_issuer_and_unknown_user_are_refused(stack: RunningStack) -> None:
    key = load_or_create(stack.state.keys)
    now = int(time.time())
    expired = key.sign(claims(stack, iat=now - 7200, exp=now - 3600))
    assert read_logs(stack, expired).json()["code"] == "token_expired"
    other_issuer = key.sign(claims(stack, iss="https://elsewhere.supabase.co/auth/v1"))
    assert read_logs(stack, other_issuer).status_code == 401
    ghost = mint_user_token(key, user_id=str(uuid.uuid4()), email="ghost@aef.local",
                            supabase_url=stack.url)
    response = read_logs(stack, ghost)
    assert response.status_code == 401
    assert response.json()["code"] == "unknown_user"
