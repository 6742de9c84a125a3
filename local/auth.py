"""The part of Supabase Auth (GoTrue) that supabase-js uses to sign in, answered for dev users.

The console (and any frontend) signs in with `supabase.auth.signInWithPassword`; against `aef
dev` that call lands here and gets a session shaped like Supabase's, whose access token is the
same ES256 JWT `aef token` mints and the functions verify. So a page's code is identical
against a Supabase project. Only password sign-in, refresh, `GET /user` and logout exist: the
dev users are fixed (local.state.DEV_USERS) and share one local password (DEV_PASSWORD, or
AEF_DEV_PASSWORD when set). Refresh tokens live in memory: a restart signs everyone out.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.keys import DEFAULT_TTL_SECONDS, SigningKey, issuer_for, mint_user_token

DEV_PASSWORD = "aef-dev-password"  # noqa: S105 - the local stack's dev users only
API_VERSION = "2024-01-01"  # gotrue-js reads error bodies as {code, message} from this version


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "error_code": code, "message": message, "msg": message},
                        status_code=status, headers={"X-Supabase-Api-Version": API_VERSION})


@dataclass
class DevAuth:
    """Sessions for the dev users, signed with the stack's key."""

    key: SigningKey
    supabase_url: str
    users: dict[str, str]  # email -> id
    password: str = DEV_PASSWORD
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    _refresh: dict[str, str] = field(default_factory=dict)  # refresh token -> email

    def user_object(self, email: str) -> dict[str, Any]:
        """The user as GoTrue returns it (the fields supabase-js reads)."""
        return {
            "id": self.users[email], "aud": "authenticated", "role": "authenticated",
            "email": email, "email_confirmed_at": "2025-01-01T00:00:00Z", "phone": "",
            "confirmed_at": "2025-01-01T00:00:00Z",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {"email": email, "email_verified": True},
            "identities": [], "is_anonymous": False,
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
        }

    def session(self, email: str) -> dict[str, Any]:
        now = int(time.time())
        refresh = secrets.token_urlsafe(24)
        self._refresh[refresh] = email
        token = mint_user_token(self.key, user_id=self.users[email], email=email,
                                supabase_url=self.supabase_url, ttl_seconds=self.ttl_seconds,
                                now=now)
        return {"access_token": token, "token_type": "bearer", "expires_in": self.ttl_seconds,
                "expires_at": now + self.ttl_seconds, "refresh_token": refresh,
                "user": self.user_object(email)}

    def _email_for_token(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims = jwt.decode(token, self.key.private_key.public_key(), algorithms=["ES256"],
                                audience="authenticated",
                                issuer=issuer_for(self.supabase_url))
        except jwt.PyJWTError:
            return None
        email = str(claims.get("email", "")).lower()
        return email if self.users.get(email) == claims.get("sub") else None

    async def token(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "validation_failed", "The body must be a JSON object")
        grant = request.query_params.get("grant_type")
        if grant == "password":
            email = str(body.get("email") or "").strip().lower()
            if email not in self.users or not secrets.compare_digest(
                    str(body.get("password") or ""), self.password):
                return _error(400, "invalid_credentials", "Invalid login credentials")
            return JSONResponse(self.session(email))
        if grant == "refresh_token":
            email = self._refresh.pop(str(body.get("refresh_token") or ""), "")
            if not email:
                return _error(400, "refresh_token_not_found", "Invalid Refresh Token: "
                              "Refresh Token Not Found")
            return JSONResponse(self.session(email))
        return _error(400, "unsupported_grant_type",
                      "Only the password and refresh_token grants exist on the local stack")

    async def user(self, request: Request) -> Response:
        email = self._email_for_token(request)
        if email is None:
            return _error(401, "bad_jwt", "invalid JWT: unable to parse or verify signature")
        return JSONResponse(self.user_object(email))

    async def logout(self, request: Request) -> Response:
        email = self._email_for_token(request)
        if email is None:
            return _error(401, "bad_jwt", "invalid JWT: unable to parse or verify signature")
        for refresh in [r for r, e in self._refresh.items() if e == email]:
            del self._refresh[refresh]
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        return [Route("/auth/v1/token", self.token, methods=["POST"]),
                Route("/auth/v1/user", self.user, methods=["GET"]),
                Route("/auth/v1/logout", self.logout, methods=["POST"])]
