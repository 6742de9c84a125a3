"""Token rules: any project-signed JWT with role and exp, Realtime's error texts."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from aef.auth import JwksCache
from aef.settings import Settings
from local.realtime.tokens import TokenRejected, TokenVerifier
from tests.realtime.conftest import JWT_SECRET, make_token


@pytest.fixture
def verifier() -> TokenVerifier:
    settings = Settings().model_copy(update={"jwt_secret": SecretStr(JWT_SECRET),
                                             "jwt_issuer": None,
                                             "jwt_audience": "authenticated"})
    return TokenVerifier(settings)


def test_api_keys_and_user_tokens_are_accepted(verifier: TokenVerifier) -> None:
    anon = verifier.verify(make_token(None, role="anon", iss="supabase"))
    assert (anon.role, anon.sub) == ("anon", None)
    user = str(uuid.uuid4())
    claims = verifier.verify(make_token(user, email="a@example.com"))
    assert (claims.role, claims.sub, claims.raw["email"]) == ("authenticated", user,
                                                              "a@example.com")


@pytest.mark.parametrize(("token", "reason"), [
    (lambda: jwt.encode({"role": "anon"}, JWT_SECRET, "HS256"),
     "InvalidJWTToken: Fields `role` and `exp` are required in JWT"),
    (lambda: jwt.encode({"role": "anon", "exp": int(time.time()) - 3}, JWT_SECRET, "HS256"),
     "InvalidJWTToken: Token has expired 3 seconds ago"),
    (lambda: make_token(None, role="anon", secret="z" * 40),
     "JwtSignatureError: Failed to validate JWT signature"),
    (lambda: "not-a-jwt", "InvalidJWTToken: Token claims must be a map"),
    # An `authenticated` token must also satisfy aef.auth (a user id as subject).
    (lambda: make_token("not-a-uuid"), "InvalidJWTToken: subject is not a user id"),
])
def test_refusals_carry_realtimes_reason(verifier: TokenVerifier, token: Callable[[], str],
                                         reason: str) -> None:
    with pytest.raises(TokenRejected) as refused:
        verifier.verify(token())
    assert refused.value.reason in (reason, reason.replace(" 3 seconds", " 4 seconds"))


@pytest.fixture
def es256_jwks() -> Iterator[tuple[Any, str]]:
    """An ES256 key and a JWKS URL serving its public half (as `aef dev` does)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield private_key, f"http://127.0.0.1:{server.server_port}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def test_es256_tokens_are_checked_against_the_jwks(es256_jwks: tuple[Any, str]) -> None:
    private_key, url = es256_jwks
    settings = Settings().model_copy(update={"jwt_secret": None, "jwks_url": url,
                                             "jwt_issuer": None,
                                             "jwt_audience": "authenticated"})
    verifier = TokenVerifier(settings, jwks=JwksCache())
    now = int(time.time())

    def sign(claims: dict[str, Any], kid: str = "k1") -> str:
        return jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": kid})

    assert verifier.verify(sign({"role": "anon", "exp": now + 60})).role == "anon"
    user = str(uuid.uuid4())
    assert verifier.verify(sign({"role": "authenticated", "sub": user, "aud": "authenticated",
                                 "exp": now + 60})).sub == user
    with pytest.raises(TokenRejected) as refused:
        verifier.verify(sign({"role": "anon", "exp": now + 60}, kid="unknown"))
    assert refused.value.reason == "JwtSignatureError: Failed to validate JWT signature"
    with pytest.raises(TokenRejected):  # no HS256 secret configured
        verifier.verify(make_token(None, role="anon"))
