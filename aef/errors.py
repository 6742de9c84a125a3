"""Domain errors with stable codes; the HTTP layer renders them as RFC 9457 problem+json.

Kept free of FastAPI so pure code (transform, states, service) can raise them.
`PROBLEM_CODES` is the one list of every `code` a response can carry: the OpenAPI spec
enumerates it, docs/architecture.md tabulates it, and tests/api/test_error_codes.py checks
that the code raises no other and that each one can really be produced.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ProblemCode(NamedTuple):
    status: int
    meaning: str


PROBLEM_CODES: dict[str, ProblemCode] = {
    "malformed_json": ProblemCode(
        400, "The body is not JSON this API accepts: not UTF-8, not valid JSON, nested too "
             "deeply, a number it cannot represent (NaN, Infinity, more than 4300 digits), or "
             "a string with \\u0000 or an unpaired surrogate"),
    "invalid_content_length": ProblemCode(400, "The Content-Length header is not a number"),
    "missing_token": ProblemCode(401, "No `Authorization: Bearer <token>` header"),
    "invalid_token": ProblemCode(401, "The token is malformed, badly signed, or has wrong claims"),
    "token_expired": ProblemCode(401, "The token has expired; refresh the session"),
    "unknown_user": ProblemCode(401, "The token's user no longer exists"),
    "cors_refused": ProblemCode(403, "A CORS preflight asked for an origin, method or header "
                                     "this API does not allow"),
    "not_found": ProblemCode(404, "No route for this path"),
    "sop_not_found": ProblemCode(404, "No SOP with this id (or not yours)"),
    "document_not_found": ProblemCode(404, "No AEF document with this id (or not yours)"),
    "execution_not_found": ProblemCode(404, "No execution with this id (or not yours)"),
    "checkpoint_not_found": ProblemCode(404, "No checkpoint with this id (or not yours)"),
    "method_not_allowed": ProblemCode(405, "The path exists but not with this method; see "
                                           "the `Allow` header"),
    "invalid_state": ProblemCode(409, "The execution's status does not allow this (see "
                                      "`currentStatus`)"),
    "runner_not_live": ProblemCode(409, "The action needs a live runner and none holds the "
                                        "execution"),
    "too_many_active": ProblemCode(409, "The user already has the maximum of active executions"),
    "idempotency_key_reused": ProblemCode(409, "This Idempotency-Key came with another body"),
    "idempotency_key_unusable": ProblemCode(409, "The first request with this Idempotency-Key "
                                                 "failed; use a new key"),
    "document_mismatch": ProblemCode(409, "The execution belongs to another document"),
    "checkpoint_already_answered": ProblemCode(409, "The checkpoint was answered before (see "
                                                    "`firstDecision`)"),
    "checkpoint_expired": ProblemCode(409, "The checkpoint timed out; its default action "
                                           "applies"),
    "execution_finished": ProblemCode(409, "The execution already ended"),
    "illegal_transition": ProblemCode(409, "The database refused a state change (a race the "
                                           "API's own checks did not see)"),
    "concurrent_update": ProblemCode(409, "A concurrent change won; retry the request"),
    "append_only": ProblemCode(409, "Events and logs are never rewritten"),
    "payload_too_large": ProblemCode(413, "The body is larger than the limit"),
    "unsupported_media_type": ProblemCode(415, "A body that is not `application/json`"),
    "validation_failed": ProblemCode(422, "A field, parameter or document is not valid (see "
                                          "`errors`)"),
    "unknown_step": ProblemCode(422, "A step id that the document's plan does not have"),
    "invalid_cursor": ProblemCode(422, "A pagination cursor this API did not issue"),
    "invalid_sop": ProblemCode(422, "The stored SOP is not a JSON object"),
    "missing_inputs": ProblemCode(422, "Variables or credentials the selected steps need were "
                                       "not given (see `missing`)"),
    "invalid_rule": ProblemCode(422, "A decision rule that does not parse (aef.rules)"),
    "missing_variable": ProblemCode(422, "A decision rule names a variable that is not set"),
    "rate_limited": ProblemCode(429, "Too many requests; see `Retry-After` and `RateLimit-*`"),
    "internal_error": ProblemCode(500, "Our bug; the `requestId` finds it in the logs"),
    "bad_gateway": ProblemCode(502, "The local gateway's function failed to answer"),
    "jwks_unavailable": ProblemCode(503, "The signing keys could not be fetched"),
    "database_unavailable": ProblemCode(503, "The database is unreachable; retry shortly"),
    "database_busy": ProblemCode(503, "The database is busy; retry shortly"),
}


class AefError(Exception):
    """An error a client can act on: HTTP status, a stable machine code, a human title.

    Subclasses with one natural code set it; the others need `code=` when raised, so no
    problem response ever carries a vague catch-all code.
    """

    status: int = 400
    code: str
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
        elif not hasattr(self, "code"):
            raise TypeError(f"{type(self).__name__} needs a code")
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra


class ValidationFailed(AefError):
    status, code, title = 422, "validation_failed", "The request is not valid"


class Unauthorized(AefError):
    status, title = 401, "Authentication required"


class NotFound(AefError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AefError):
    status, title = 409, "Conflict with the current state"


class PayloadTooLarge(AefError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class RateLimited(AefError):
    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(AefError):
    status, title = 503, "A dependency is unavailable"
