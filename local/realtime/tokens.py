"""Token checks as Supabase Realtime makes them, with Realtime's error texts.

Realtime accepts any project-signed JWT that has `role` and `exp` (the anon and service-role
API keys included) and lets RLS decide what a role may read. So the signature is checked here
for every token with the project's keys (legacy HS256 secret or the JWKS that `aef.auth` caches),
and a token whose role is `authenticated` must also pass `aef.auth.verify_token`, the same rules
every AEF function applies. Expiry is checked without leeway, as Realtime (Joken) does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import jwt

from aef import auth as aef_auth
from aef.errors import ServiceUnavailable, Unauthorized
from aef.settings import Settings

AUTHENTICATED = "authenticated"


class TokenRejected(Exception):
    """A token Realtime would refuse; `reason` is the exact text Realtime replies with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}"


def expired(seconds_ago: int) -> TokenRejected:
    return TokenRejected("InvalidJWTToken", f"Token has expired {seconds_ago} seconds ago")


def _signature_error() -> TokenRejected:
    return TokenRejected("JwtSignatureError", "Failed to validate JWT signature")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """A verified token: what the RLS probe sets as `role`, `request.jwt.claims` and `sub`."""

    token: str
    raw: dict[str, Any]
    role: str
    sub: str | None
    exp: int


class TokenVerifier:
    """Verifies socket and channel tokens against the project's signing keys."""

    def __init__(
        self,
        settings: Settings,
        *,
        jwks: aef_auth.JwksCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.jwks = jwks or aef_auth.default_jwks
        self.clock = clock

    def verify(self, token: str) -> TokenClaims:
        """The token's claims, or `TokenRejected` with Realtime's reason."""
        token = "".join(unquote(token).split())
        if not token:
            raise TokenRejected("InvalidJWTToken", "Token claims must be a map")
        raw = self._verify_signature(token)
        role, exp = raw.get("role"), raw.get("exp")
        if not isinstance(role, str) or "exp" not in raw:
            raise TokenRejected("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= 0:
            raise TokenRejected("InvalidJWTExpiration", "Token expiration time is invalid")
        remaining = int(exp) - int(self.clock())
        if remaining <= 0:
            raise expired(-remaining)
        if role == AUTHENTICATED:
            try:
                aef_auth.verify_token(token, settings=self.settings, jwks=self.jwks)
            except Unauthorized as exc:
                raise TokenRejected("InvalidJWTToken", exc.detail) from None
        sub = raw.get("sub")
        return TokenClaims(token, raw, role, sub if isinstance(sub, str) and sub else None,
                           int(exp))

    def _verify_signature(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRejected("InvalidJWTToken", "Token claims must be a map") from None
        if not isinstance(unverified, dict):
            raise TokenRejected("InvalidJWTToken", "Token claims must be a map")
        alg = header.get("alg")
        key = self._key(header, alg)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                options={"verify_aud": False, "verify_exp": False, "verify_iss": False},
            )
        except jwt.InvalidSignatureError:
            raise _signature_error() from None
        except jwt.PyJWTError as exc:
            raise TokenRejected("InvalidJWTToken", str(exc)) from None
        return dict(payload)

    def _key(self, header: dict[str, Any], alg: Any) -> Any:
        if alg in aef_auth.HMAC_ALGORITHMS:
            secret = self.settings.jwt_secret
            if secret is None or not secret.get_secret_value():
                raise _signature_error()
            return secret.get_secret_value()
        if alg not in aef_auth.ASYMMETRIC_ALGORITHMS:
            raise _signature_error()
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _signature_error()
        try:
            jwk = self.jwks.get(self.settings.effective_jwks_url, kid,
                                self.settings.jwks_cache_seconds)
        except ServiceUnavailable:
            raise TokenRejected("JwtSignatureError",
                                "Failed to fetch the project's signing keys") from None
        if jwk is None or jwk.algorithm_name != alg:
            raise _signature_error()
        return jwk.key
