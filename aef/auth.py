"""Supabase JWT verification: asymmetric keys from the project's JWKS, or the legacy HS256 secret.

Verification is stateless: a valid signature, time window, audience, issuer (when configured),
role and subject are enough. Whether the user still exists is a policy the HTTP layer may add
with a claims check (see `aef.http.create_app(claims_check=...)`).

The JWKS is cached per process, so warm Lambda invocations verify without a network call. An
unknown `kid` triggers at most one refetch per `min_refetch_seconds`, so a flood of forged kids
cannot turn this module into a JWKS hammer. A token that verified is remembered by the same
cache (a client sends the same token on every request until it refreshes it): a warm request
with it only checks that it has not expired since, and no longer than the keys themselves are
trusted (`jwks_cache_seconds`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from aef.errors import ServiceUnavailable, Unauthorized
from aef.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Algorithms a JWKS key may sign with. HS* is never taken from a JWKS (a symmetric key has no
# business being published); it is accepted only with the configured legacy secret.
ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256", "EdDSA"})
_KTY_FOR_ALG = {"ES256": "EC", "RS256": "RSA", "EdDSA": "OKP"}
HMAC_ALGORITHMS = frozenset({"HS256"})
REQUIRED_ROLE = "authenticated"
CLOCK_SKEW_SECONDS = 30
JWKS_TIMEOUT_SECONDS = 3.0
JWKS_MAX_BYTES = 256 * 1024
MAX_TOKEN_BYTES = 16 * 1024
VERIFIED_TOKENS_MAX = 256  # per process; a sandbox mostly serves a handful of sessions


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified identity of a caller. `raw` is the full payload (for `request.jwt.claims`)."""

    sub: str
    role: str
    email: str | None
    aud: str | list[str]
    exp: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def user_id(self) -> str:
        return self.sub


def _fail(detail: str, *, code: str = "invalid_token") -> Unauthorized:
    """401 with an RFC 6750 challenge; `code` is stable, `detail` is for humans."""
    challenge = f'Bearer error="invalid_token", error_description="{detail}"'
    if code == "missing_token":
        challenge = "Bearer"
    return Unauthorized(detail, code=code, headers={"WWW-Authenticate": challenge})


class JwksCache:
    """Signing keys of one JWKS URL, cached for `ttl_seconds`; thread-safe.

    A fetch failure keeps serving the keys already held (stale beats down), and raises only
    when no key was ever fetched. Also holds the tokens verified lately (`verified`/`remember`).
    """

    def __init__(self, *, min_refetch_seconds: float = 30.0) -> None:
        self.min_refetch_seconds = min_refetch_seconds
        self._lock = threading.Lock()
        self._url: str | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self.fetch_count = 0
        # (token, what verified it) -> (claims, monotonic time until which it may be reused)
        self._verified: dict[tuple[str, ...], tuple[Claims, float]] = {}

    def clear(self) -> None:
        with self._lock:
            self._url, self._keys = None, {}
            self._fetched_at = self._attempted_at = float("-inf")
            self._verified = {}

    def verified(self, key: tuple[str, ...]) -> Claims | None:
        """The claims of a token verified earlier under the same settings, if still valid:
        not expired (the same leeway as PyJWT's check) and verified less than the keys' TTL
        ago."""
        entry = self._verified.get(key)
        if entry is None:
            return None
        claims, reuse_until = entry
        if time.monotonic() < reuse_until and time.time() < claims.exp + CLOCK_SKEW_SECONDS:
            return claims
        self._verified.pop(key, None)
        return None

    def remember(self, key: tuple[str, ...], claims: Claims, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        with self._lock:
            while len(self._verified) >= VERIFIED_TOKENS_MAX:
                self._verified.pop(next(iter(self._verified)))  # the oldest
            self._verified[key] = (claims, time.monotonic() + ttl_seconds)

    def get(self, url: str, kid: str, ttl_seconds: float) -> jwt.PyJWK | None:
        """The key for `kid`: refetch when stale, or (rate-limited) when `kid` is unknown.

        After a failed fetch nothing is retried for `min_refetch_seconds`, so a JWKS outage
        costs one timeout per window, not one per request.
        """
        with self._lock:
            now = time.monotonic()
            if url != self._url:
                self._url, self._keys = url, {}
                self._fetched_at = self._attempted_at = float("-inf")
            may_retry = now - self._attempted_at >= self.min_refetch_seconds
            last_failed = self._attempted_at > self._fetched_at
            stale = now - self._fetched_at >= ttl_seconds
            if (stale and (may_retry or not last_failed)) or (kid not in self._keys and may_retry):
                self._refresh(url, now)
            elif self._fetched_at == float("-inf"):
                raise ServiceUnavailable(
                    "The signing keys could not be fetched", code="jwks_unavailable"
                )
            return self._keys.get(kid)

    def _refresh(self, url: str, now: float) -> None:
        self._attempted_at = now
        try:
            keys = _fetch_jwks(url)
        except (OSError, ValueError) as exc:
            log.warning("jwks fetch failed", extra={"jwksUrl": url, "error": str(exc)})
            if self._fetched_at == float("-inf"):
                raise ServiceUnavailable(
                    "The signing keys could not be fetched", code="jwks_unavailable"
                ) from exc
            return
        self._keys, self._fetched_at = keys, now
        self.fetch_count += 1


def _fetch_jwks(url: str) -> dict[str, jwt.PyJWK]:
    """Download and parse a JWKS; keys that are not usable signing keys are skipped."""
    import urllib.request  # lazy: only a cold start that actually needs keys pays for it

    if not url.startswith(("https://", "http://")):
        raise ValueError(f"JWKS URL must be http(s): {url}")
    req = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=JWKS_TIMEOUT_SECONDS) as resp:  # noqa: S310
        body = resp.read(JWKS_MAX_BYTES + 1)
    if len(body) > JWKS_MAX_BYTES:
        raise ValueError("JWKS document too large")
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct" or "d" in entry:
            continue  # not a public signing key
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            log.warning("jwks key skipped", extra={"kid": entry.get("kid")})
            continue
        if key.algorithm_name in ASYMMETRIC_ALGORITHMS:
            keys[entry["kid"]] = key
    return keys


default_jwks = JwksCache()


def _signing_key(header: Mapping[str, Any], settings: Settings, jwks: JwksCache) -> Any:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise _fail("unsigned or unknown algorithm")
    if alg in HMAC_ALGORITHMS:
        if settings.jwt_secret is None:
            raise _fail("symmetric tokens are not accepted")
        secret = settings.jwt_secret.get_secret_value()
        if not secret:
            raise _fail("symmetric tokens are not accepted")
        return secret
    if alg not in ASYMMETRIC_ALGORITHMS:
        raise _fail("algorithm not allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _fail("token has no key id")
    key = jwks.get(settings.effective_jwks_url, kid, settings.jwks_cache_seconds)
    if key is None:
        raise _fail("unknown signing key")
    if key.algorithm_name != alg or key.key_type != _KTY_FOR_ALG[alg]:
        raise _fail("algorithm does not match the signing key")
    return key.key


def verify_token(
    token: str | None,
    *,
    settings: Settings | None = None,
    jwks: JwksCache | None = None,
) -> Claims:
    """Verify a Supabase access token and return its claims, or raise `Unauthorized`.

    Codes: `missing_token`, `token_expired`, `invalid_token`. `ServiceUnavailable`
    (`jwks_unavailable`) when the keys were never reachable.
    """
    if not token or not token.strip():
        raise _fail("no bearer token", code="missing_token")
    if len(token) > MAX_TOKEN_BYTES:
        raise _fail("token too large")
    settings = settings or get_settings()
    jwks = jwks or default_jwks
    # everything the verification below depends on besides the token and the clock
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else ""
    cache_key = (
        token,
        secret,
        settings.jwt_audience,
        settings.jwt_issuer or "",
        settings.effective_jwks_url,
    )
    known = jwks.verified(cache_key)
    if known is not None:
        return known
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _fail("malformed token") from None
    key = _signing_key(header, settings, jwks)
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[header["alg"]],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=CLOCK_SKEW_SECONDS,
            options={
                "require": ["exp", "sub", "aud"],
                "verify_iss": settings.jwt_issuer is not None,
            },
        )
    except jwt.ExpiredSignatureError:
        raise _fail("token expired", code="token_expired") from None
    except jwt.ImmatureSignatureError:
        raise _fail("token not yet valid") from None
    except jwt.InvalidAudienceError:
        raise _fail("wrong audience") from None
    except jwt.InvalidIssuerError:
        raise _fail("wrong issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _fail(f"missing claim {exc.claim}") from None
    except jwt.InvalidSignatureError:
        raise _fail("bad signature") from None
    except jwt.PyJWTError:
        raise _fail("invalid token") from None
    claims = _claims(payload)
    jwks.remember(cache_key, claims, settings.jwks_cache_seconds)
    return claims


def _claims(payload: dict[str, Any]) -> Claims:
    if payload.get("role") != REQUIRED_ROLE:
        raise _fail("token role is not 'authenticated'")
    sub = payload.get("sub")
    try:
        user_id = str(uuid.UUID(sub)) if isinstance(sub, str) else None
    except ValueError:
        user_id = None
    if user_id is None:
        raise _fail("subject is not a user id")
    exp = payload["exp"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _fail("invalid expiry")
    iat = payload.get("iat")  # PyJWT already refused an iat in the future
    if iat is not None and (not isinstance(iat, int | float) or iat > exp):
        raise _fail("issued after it expires")
    email = payload.get("email")
    return Claims(
        sub=user_id,
        role=REQUIRED_ROLE,
        email=email if isinstance(email, str) and email else None,
        aud=payload["aud"],
        exp=int(exp),
        raw=payload,
    )
