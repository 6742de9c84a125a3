"""Supabase JWT verification against a JWKS served by a real local HTTP server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from aef.auth import Claims, JwksCache, verify_token
from aef.errors import ServiceUnavailable, Unauthorized
from aef.settings import Settings
from tests.httpserver import send_json

SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
USER = "0b6a3c1e-8a4f-4a8e-9a51-3f0c2d1b7e11"


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts its requests and can be made to fail."""

    url: str = ""
    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    requests: int = 0
    fail: bool = False


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ec_other": ec.generate_private_key(ec.SECP256R1()),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed": ed25519.Ed25519PrivateKey.generate(),
    }


def _public_jwk(private: Any, kid: str) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        jwk["alg"] = "ES256"
    elif isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        jwk["alg"] = "RS256"
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        jwk["alg"] = "EdDSA"
    jwk.update({"kid": kid, "use": "sig"})
    return jwk


@pytest.fixture(scope="module")
def server_state(keys: dict[str, Any]) -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            if state.fail:
                self.send_response(500)
                self.end_headers()
                return
            send_json(self, state.document)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/auth/v1/.well-known/jwks.json"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def jwks(server_state: JwksServer, keys: dict[str, Any]) -> JwksServer:
    server_state.document = {
        "keys": [
            _public_jwk(keys["ec"], "ec-1"),
            _public_jwk(keys["rsa"], "rsa-1"),
            _public_jwk(keys["ed"], "ed-1"),
        ]
    }
    server_state.requests = 0
    server_state.fail = False
    return server_state


def _settings(jwks: JwksServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"jwks_url": jwks.url, "jwt_secret": None, "jwt_issuer": None}
    values.update(overrides)
    return Settings(**values)


def _payload(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": USER,
        "role": "authenticated",
        "aud": "authenticated",
        "email": "ada@example.com",
        "iat": now,
        "exp": now + 3600,
        "iss": "http://127.0.0.1:54321/auth/v1",
        "session_id": str(uuid.uuid4()),
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def _es256(keys: dict[str, Any], kid: str = "ec-1", key: str = "ec", **claims: Any) -> str:
    return jwt.encode(_payload(**claims), keys[key], algorithm="ES256", headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token built by hand, for shapes no well-behaved library would sign."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _verify(token: str | None, settings: Settings, cache: JwksCache | None = None) -> Claims:
    return verify_token(token, settings=settings, jwks=cache or JwksCache())


def _code(token: str | None, settings: Settings, cache: JwksCache | None = None) -> str:
    with pytest.raises(Unauthorized) as info:
        _verify(token, settings, cache)
    assert info.value.status == 401
    assert "WWW-Authenticate" in info.value.headers
    return info.value.code


# ---- valid tokens ----------------------------------------------------------------------------


def test_valid_es256_from_jwks(jwks: JwksServer, keys: dict[str, Any]) -> None:
    claims = _verify(_es256(keys), _settings(jwks))
    assert claims.sub == USER
    assert claims.role == "authenticated"
    assert claims.email == "ada@example.com"
    assert claims.aud == "authenticated"
    assert claims.exp > time.time()
    assert claims.raw["session_id"]
    assert jwks.requests == 1


def test_valid_rs256_and_eddsa_from_jwks(jwks: JwksServer, keys: dict[str, Any]) -> None:
    settings = _settings(jwks)
    cache = JwksCache()
    rs = jwt.encode(_payload(), keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    ed = jwt.encode(_payload(), keys["ed"], algorithm="EdDSA", headers={"kid": "ed-1"})
    assert _verify(rs, settings, cache).sub == USER
    assert _verify(ed, settings, cache).sub == USER


def test_valid_hs256_with_the_legacy_secret(jwks: JwksServer) -> None:
    token = jwt.encode(_payload(), SECRET, algorithm="HS256")
    claims = _verify(token, _settings(jwks, jwt_secret=SECRET))
    assert claims.sub == USER
    assert jwks.requests == 0  # symmetric tokens never touch the JWKS


def test_subject_is_normalised(jwks: JwksServer, keys: dict[str, Any]) -> None:
    claims = _verify(_es256(keys, sub=USER.upper()), _settings(jwks))
    assert claims.sub == USER


def test_issuer_is_checked_when_configured(jwks: JwksServer, keys: dict[str, Any]) -> None:
    settings = _settings(jwks, jwt_issuer="http://127.0.0.1:54321/auth/v1")
    assert _verify(_es256(keys), settings).sub == USER
    assert _code(_es256(keys, iss="https://evil.example/auth/v1"), settings) == "invalid_token"
    assert _code(_es256(keys, iss=None), settings) == "invalid_token"


# ---- JWKS cache ------------------------------------------------------------------------------


def test_jwks_is_fetched_once_and_reused(jwks: JwksServer, keys: dict[str, Any]) -> None:
    settings, cache = _settings(jwks), JwksCache()
    for _ in range(5):
        _verify(_es256(keys), settings, cache)
    assert jwks.requests == 1
    assert cache.fetch_count == 1


def test_a_verified_token_is_reused_until_it_expires(
    jwks: JwksServer, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm requests with the same token skip the signature check, never the expiry."""
    settings, cache = _settings(jwks), JwksCache()
    token = _es256(keys)
    first = _verify(token, settings, cache)
    jwks.document["keys"] = []  # a second verification could not find the key
    assert _verify(token, settings, cache) is first
    # the same token under other settings (another audience) is verified again, and refused
    assert _code(token, _settings(jwks, jwt_audience="other"), cache) == "invalid_token"
    # once past its expiry (and PyJWT's leeway) the remembered token is refused as expired
    later = time.time() + 3600 + 31

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.fromtimestamp(later, tz)

    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)  # PyJWT's own clock
    jwks.document["keys"] = [_public_jwk(keys["ec"], "ec-1")]
    assert _code(token, settings, cache) == "token_expired"


def test_a_verified_token_is_not_reused_past_the_keys_ttl(
    jwks: JwksServer, keys: dict[str, Any]
) -> None:
    settings, cache = _settings(jwks, jwks_cache_seconds=0), JwksCache()
    token = _es256(keys)
    _verify(token, settings, cache)
    jwks.document["keys"] = []  # the key was withdrawn: the token is checked against that
    assert _code(token, settings, cache) == "invalid_token"


def test_jwks_is_refetched_after_ttl(jwks: JwksServer, keys: dict[str, Any]) -> None:
    settings, cache = _settings(jwks, jwks_cache_seconds=0), JwksCache()
    _verify(_es256(keys), settings, cache)
    _verify(_es256(keys), settings, cache)
    assert jwks.requests == 2


def test_rotated_key_is_picked_up_by_one_refetch(jwks: JwksServer, keys: dict[str, Any]) -> None:
    settings, cache = _settings(jwks), JwksCache(min_refetch_seconds=0)
    _verify(_es256(keys), settings, cache)
    jwks.document["keys"].append(_public_jwk(keys["ec_other"], "ec-2"))
    claims = _verify(_es256(keys, kid="ec-2", key="ec_other"), settings, cache)
    assert claims.sub == USER
    assert jwks.requests == 2


def test_unknown_kid_flood_does_not_hammer_jwks(jwks: JwksServer, keys: dict[str, Any]) -> None:
    settings, cache = _settings(jwks), JwksCache(min_refetch_seconds=60)
    _verify(_es256(keys), settings, cache)
    for i in range(25):
        assert _code(_es256(keys, kid=f"forged-{i}"), settings, cache) == "invalid_token"
    assert jwks.requests == 1


def test_unknown_kid_is_refused_after_one_refetch(jwks: JwksServer, keys: dict[str, Any]) -> None:
    cache = JwksCache(min_refetch_seconds=0)
    assert _code(_es256(keys, kid="nope"), _settings(jwks), cache) == "invalid_token"
    assert jwks.requests == 1  # the first fetch already was the refetch


def test_stale_keys_are_served_when_jwks_fails(jwks: JwksServer, keys: dict[str, Any]) -> None:
    settings, cache = _settings(jwks, jwks_cache_seconds=0), JwksCache(min_refetch_seconds=60)
    _verify(_es256(keys), settings, cache)
    jwks.fail = True
    assert _verify(_es256(keys), settings, cache).sub == USER
    assert _verify(_es256(keys), settings, cache).sub == USER
    assert jwks.requests == 2  # one failed attempt, then back-off


def test_unreachable_jwks_is_503(jwks: JwksServer, keys: dict[str, Any]) -> None:
    jwks.fail = True
    with pytest.raises(ServiceUnavailable) as info:
        _verify(_es256(keys), _settings(jwks))
    assert info.value.code == "jwks_unavailable"


def test_jwks_entries_that_are_not_public_signing_keys_are_ignored(
    jwks: JwksServer, keys: dict[str, Any]
) -> None:
    private_jwk = json.loads(ECAlgorithm.to_jwk(keys["ec_other"]))
    private_jwk.update({"kid": "leaked", "alg": "ES256"})
    jwks.document["keys"] += [
        {"kty": "oct", "kid": "sym", "k": _b64(SECRET.encode()), "alg": "HS256"},
        private_jwk,
        {**_public_jwk(keys["ec_other"], "enc-1"), "use": "enc"},
    ]
    settings = _settings(jwks)
    assert _code(_es256(keys, kid="leaked", key="ec_other"), settings) == "invalid_token"
    assert _code(_es256(keys, kid="enc-1", key="ec_other"), settings) == "invalid_token"
    sym = jwt.encode(_payload(), SECRET, algorithm="HS256", headers={"kid": "sym"})
    assert _code(sym, settings) == "invalid_token"


# ---- attacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "   "])
def test_missing_token(jwks: JwksServer, token: str | None) -> None:
    assert _code(token, _settings(jwks)) == "missing_token"


@pytest.mark.parametrize(
    "token", ["abc", "a.b.c", "a.b", "eyJhbGciOiJFUzI1NiJ9..", "€.€.€", "x" * 20_000]
)
def test_malformed_token(jwks: JwksServer, token: str) -> None:
    assert _code(token, _settings(jwks)) == "invalid_token"
    assert jwks.requests == 0


def test_expired(jwks: JwksServer, keys: dict[str, Any]) -> None:
    now = int(time.time())
    token = _es256(keys, iat=now - 7200, exp=now - 3600)
    assert _code(token, _settings(jwks)) == "token_expired"


def test_missing_exp(jwks: JwksServer, keys: dict[str, Any]) -> None:
    token = jwt.encode(
        {k: v for k, v in _payload().items() if k != "exp"},
        keys["ec"],
        algorithm="ES256",
        headers={"kid": "ec-1"},
    )
    assert _code(token, _settings(jwks)) == "invalid_token"


def test_not_yet_valid(jwks: JwksServer, keys: dict[str, Any]) -> None:
    now = int(time.time())
    settings = _settings(jwks)
    assert _code(_es256(keys, nbf=now + 3600), settings) == "invalid_token"
    assert _code(_es256(keys, iat=now + 3600, exp=now + 7200), settings) == "invalid_token"


def test_issued_after_expiry(jwks: JwksServer, keys: dict[str, Any]) -> None:
    now = int(time.time())
    assert _code(_es256(keys, iat=now + 10, exp=now + 5), _settings(jwks)) == "invalid_token"


def test_wrong_audience(jwks: JwksServer, keys: dict[str, Any]) -> None:
    assert _code(_es256(keys, aud="anon"), _settings(jwks)) == "invalid_token"


def test_wrong_signature(jwks: JwksServer, keys: dict[str, Any]) -> None:
    forged = _es256(keys, kid="ec-1", key="ec_other")
    assert _code(forged, _settings(jwks)) == "invalid_token"


def test_tampered_payload(jwks: JwksServer, keys: dict[str, Any]) -> None:
    header, _payload_b64, signature = _es256(keys).split(".")
    evil = _b64(json.dumps(_payload(sub=str(uuid.uuid4()))).encode())
    assert _code(f"{header}.{evil}.{signature}", _settings(jwks)) == "invalid_token"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(jwks: JwksServer, alg: str) -> None:
    token = _raw_token({"alg": alg, "typ": "JWT", "kid": "ec-1"}, _payload(), None)
    assert _code(token, _settings(jwks)) == "invalid_token"
    assert _code(token, _settings(jwks, jwt_secret=SECRET)) == "invalid_token"


def test_hs256_signed_with_the_public_key_is_refused(
    jwks: JwksServer, keys: dict[str, Any]
) -> None:
    """Algorithm confusion: an attacker HMACs with the published key material."""
    pem = (
        keys["ec"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    jwk_json = json.dumps(_public_jwk(keys["ec"], "ec-1")).encode()
    for secret in (pem, jwk_json):
        token = _raw_token({"alg": "HS256", "typ": "JWT", "kid": "ec-1"}, _payload(), secret)
        assert _code(token, _settings(jwks)) == "invalid_token"  # no secret configured
        assert _code(token, _settings(jwks, jwt_secret=SECRET)) == "invalid_token"
    assert jwks.requests == 0


def test_hs256_with_a_different_secret(jwks: JwksServer) -> None:
    token = jwt.encode(_payload(), "another-secret-that-is-also-32-bytes-long!", algorithm="HS256")
    assert _code(token, _settings(jwks, jwt_secret=SECRET)) == "invalid_token"


def test_algorithm_must_match_the_key(jwks: JwksServer, keys: dict[str, Any]) -> None:
    """An RS256 token naming an EC key's kid is refused before any signature check."""
    token = jwt.encode(_payload(), keys["rsa"], algorithm="RS256", headers={"kid": "ec-1"})
    assert _code(token, _settings(jwks)) == "invalid_token"


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS512", "PS256", "ES512"])
def test_unlisted_algorithms(jwks: JwksServer, alg: str) -> None:
    token = _raw_token({"alg": alg, "kid": "ec-1"}, _payload(), SECRET.encode())
    assert _code(token, _settings(jwks, jwt_secret=SECRET)) == "invalid_token"


def test_asymmetric_token_without_kid(jwks: JwksServer, keys: dict[str, Any]) -> None:
    token = jwt.encode(_payload(), keys["ec"], algorithm="ES256")
    assert _code(token, _settings(jwks)) == "invalid_token"


def test_missing_sub(jwks: JwksServer, keys: dict[str, Any]) -> None:
    assert _code(_es256(keys, sub=None), _settings(jwks)) == "invalid_token"


@pytest.mark.parametrize("sub", ["admin", "", "1234", "0b6a3c1e-8a4f-4a8e-9a51"])
def test_non_uuid_sub(jwks: JwksServer, keys: dict[str, Any], sub: str) -> None:
    assert _code(_es256(keys, sub=sub), _settings(jwks)) == "invalid_token"


@pytest.mark.parametrize("role", ["anon", "service_role", "supabase_admin", None])
def test_wrong_role(jwks: JwksServer, keys: dict[str, Any], role: str | None) -> None:
    assert _code(_es256(keys, role=role), _settings(jwks)) == "invalid_token"


def test_service_role_hs256_key_is_refused(jwks: JwksServer) -> None:
    """The project's service_role key is a valid HS256 JWT; it must not act as a user."""
    now = int(time.time())
    token = jwt.encode(
        {"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 3600},
        SECRET,
        algorithm="HS256",
    )
    assert _code(token, _settings(jwks, jwt_secret=SECRET)) == "invalid_token"
