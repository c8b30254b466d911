"""Errors that reach a partner: each carries an HTTP status and a stable code.

Messages say what is wrong and how to fix it. They name query text, column names
and public metadata only -- never a value read from the data.
"""
from __future__ import annotations


class DPQueryError(Exception):
    """Base class: `status` is the HTTP status, `code` a stable machine-readable code."""

    status = 500
    code = "internal"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict:
        """The one JSON shape every error takes: {"error": {"code", "message", ...}}."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class InvalidQuery(DPQueryError):
    status, code = 400, "invalid_query"


class PolicyViolation(DPQueryError):
    status, code = 400, "policy_violation"


class AccuracyUnreachable(DPQueryError):
    status, code = 400, "accuracy_unreachable"


class InvalidRequest(DPQueryError):
    status, code = 400, "invalid_request"


class Unauthorized(DPQueryError):
    status, code = 401, "unauthorized"


class Forbidden(DPQueryError):
    status, code = 403, "forbidden"


class BudgetExhausted(DPQueryError):
    status, code = 403, "budget_exhausted"


class NotFound(DPQueryError):
    status, code = 404, "not_found"


class IdempotencyConflict(DPQueryError):
    status, code = 409, "idempotency_conflict"


class QueryInterrupted(DPQueryError):
    status, code = 409, "query_interrupted"


class PartnerExists(DPQueryError):
    status, code = 409, "partner_exists"


class PayloadTooLarge(DPQueryError):
    status, code = 413, "too_large"


class RateLimited(DPQueryError):
    status, code = 429, "rate_limited"


class QueryTimeout(DPQueryError):
    status, code = 504, "query_timeout"


class InternalError(DPQueryError):
    status, code = 500, "internal"

    def __init__(self, message: str = "internal error: this is a bug in dpquery; "
                 "the request id identifies it in the server log", **details):
        super().__init__(message, **details)


class ConfigError(Exception):
    """Start-up refused: the configuration names a bad key or value."""
