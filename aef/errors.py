"""Domain errors with stable codes; the HTTP layer renders them as RFC 9457 problem+json.

Kept free of FastAPI so pure code (transform, states, service) can raise them.
"""

from __future__ import annotations

from typing import Any


class AefError(Exception):
    """An error a client can act on: HTTP status, a stable machine code, a human title."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra


class ValidationFailed(AefError):
    status, code, title = 422, "validation_failed", "The request is not valid"


class Unauthorized(AefError):
    status, code, title = 401, "unauthorized", "Authentication required"


class NotFound(AefError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AefError):
    status, code, title = 409, "conflict", "Conflict with the current state"


class PayloadTooLarge(AefError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class RateLimited(AefError):
    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(AefError):
    status, code, title = 503, "service_unavailable", "A dependency is unavailable"
