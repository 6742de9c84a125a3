"""The local stack's signing key: ES256 tokens shaped like Supabase Auth's, and their JWKS.

The functions verify local tokens exactly as they verify Supabase's in the cloud: they fetch
`{supabase_url}/auth/v1/.well-known/jwks.json` (served by `aef dev` from this key) and check an
ES256 signature, `kid`, audience, issuer and role. There is no shared-secret shortcut.

The private key lives in the state folder (`.aef/keys/`, git-ignored), created on first use
with mode 0600, so tokens minted by `aef token` stay valid across restarts of the stack.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ALGORITHM = "ES256"
KEY_FILE = "signing-key.pem"
JWKS_PATH = "/auth/v1/.well-known/jwks.json"
DEFAULT_TTL_SECONDS = 3600
ANON_KEY_TTL_SECONDS = 10 * 365 * 24 * 3600  # Supabase's anon key is long-lived too


class BadKeyFile(ValueError):
    """The signing key file is unreadable as a P-256 key; the message says what to do."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass(frozen=True)
class SigningKey:
    """A P-256 private key and its key id (the RFC 7638 thumbprint of the public key)."""

    private_key: ec.EllipticCurvePrivateKey
    kid: str

    @classmethod
    def from_private_key(cls, private_key: ec.EllipticCurvePrivateKey) -> SigningKey:
        return cls(private_key, thumbprint(private_key.public_key()))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig", "key_ops": ["verify"]}

    def jwks(self) -> dict[str, Any]:
        """The document served at JWKS_PATH: public parts only."""
        return {"keys": [self.public_jwk()]}

    def pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM,
                          headers={"kid": self.kid, "typ": "JWT"})


def thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256): stable for a key, so the `kid` survives restarts."""
    jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")},
                           separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def load_or_create(directory: Path) -> SigningKey:
    """The key in `directory`, created (0600) the first time; concurrent callers agree."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEY_FILE
    if not path.exists():
        fresh = SigningKey.generate()
        tmp = directory / f".{KEY_FILE}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(fresh.pem())
        try:
            os.link(tmp, path)  # fails if another process created the key first: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        private_key = None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise BadKeyFile(f"{path} is not an EC private key in PEM; delete it to get a new one "
                         "(tokens signed by the old key stop working)")
    return SigningKey.from_private_key(private_key)


def issuer_for(supabase_url: str) -> str:
    """Supabase Auth's issuer claim: `{project url}/auth/v1`."""
    return f"{supabase_url.rstrip('/')}/auth/v1"


def mint_user_token(
    key: SigningKey,
    *,
    user_id: str,
    email: str,
    supabase_url: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """An access token with the claims Supabase Auth puts in a password sign-in's session."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer_for(supabase_url),
        "sub": user_id,
        "aud": "authenticated",
        "exp": issued + ttl_seconds,
        "iat": issued,
        "email": email,
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"email": email, "email_verified": True},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": issued}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    return key.sign(claims)


def mint_anon_key(key: SigningKey, *, supabase_url: str, now: float | None = None) -> str:
    """The project's public `anon` API key (what supabase-js / supabase-py are created with)."""
    issued = int(time.time() if now is None else now)
    return key.sign({
        "iss": issuer_for(supabase_url),
        "role": "anon",
        "iat": issued,
        "exp": issued + ANON_KEY_TTL_SECONDS,
    })


def jwks_route(key: SigningKey) -> Route:
    """`GET /auth/v1/.well-known/jwks.json`, cached briefly like Supabase's endpoint."""
    document = key.jwks()

    async def endpoint(request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=60"})

    return Route(JWKS_PATH, endpoint, methods=["GET"])
