"""Errors raised by the privacy-budget ledger.

Each error has a stable ``code`` (the HTTP layer maps codes to statuses) and a
message that names the offending value and says how to fix it. Nothing here
knows about HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from budget.amounts import Amount


class LedgerError(Exception):
    """Base class of every error the ledger raises on purpose."""

    code = "ledger_error"


class InvalidAmount(LedgerError, ValueError):
    """A privacy amount is not a finite, non-negative, sensible number."""

    code = "invalid_amount"


class InvalidArgument(LedgerError, ValueError):
    """A name, reason, actor or other argument is malformed or missing."""

    code = "invalid_argument"


class UnknownPartner(LedgerError, LookupError):
    """No partner has this id."""

    code = "unknown_partner"

    def __init__(self, partner_id: str):
        super().__init__(
            f"unknown partner {partner_id!r}; list partners with `dpquery admin partner list`"
        )
        self.partner_id = partner_id


class UnknownReservation(LedgerError, LookupError):
    """No reservation has this id."""

    code = "unknown_reservation"


class UnknownKey(LedgerError, LookupError):
    """No API key has this public key id."""

    code = "unknown_key"


class PartnerSuspended(LedgerError):
    """The partner is suspended: no authentication, no new reservation."""

    code = "partner_suspended"

    def __init__(self, partner_id: str):
        super().__init__(
            f"partner {partner_id!r} is suspended; an administrator must resume it"
        )
        self.partner_id = partner_id


class BudgetExhausted(LedgerError):
    """A reservation was refused because it would exceed a limit.

    ``limit`` is ``"per_query"``, ``"partner"`` or ``"global"``;
    ``requested`` and ``remaining`` are :class:`budget.amounts.Amount`.
    """

    code = "budget_exhausted"

    def __init__(self, message: str, *, requested: Amount, remaining: Amount,
                 limit: str, partner_id: str, dataset: str):
        super().__init__(message)
        self.requested = requested
        self.remaining = remaining
        self.limit = limit
        self.partner_id = partner_id
        self.dataset = dataset


class IdempotencyConflict(LedgerError):
    """A request id was reused for a different query or a different answer."""

    code = "idempotency_conflict"


class InvalidTransition(LedgerError):
    """A reservation cannot move to the requested state (e.g. release after commit)."""

    code = "invalid_transition"


class LedgerFileError(LedgerError):
    """The ledger file cannot be used (newer schema, not a ledger, ...)."""

    code = "ledger_file_error"


class LedgerMissing(LedgerFileError):
    """No initialised ledger where one is configured: never silently replaced by a new one."""

    code = "ledger_missing"

    def __init__(self, location: str, detail: str = "it does not exist"):
        super().__init__(
            f"no ledger at {location} ({detail}); a ledger is created only by "
            f"`dpquery admin init` (or the demo's first `dpquery serve`). If it was moved, "
            f"restore it; if it was lost, restore it from a backup"
        )
        self.location = location


class LedgerMismatch(LedgerFileError):
    """The configured ledger is not the one this installation was started with."""

    code = "ledger_mismatch"


class LedgerUnavailable(LedgerError):
    """The ledger cannot be reached now (database down, file gone, lock timeout).

    Nothing was charged by the call that raised it, except when the connection
    broke while committing: then the charge may have been recorded, and a retry
    with the same request id is not charged again.
    """

    code = "ledger_unavailable"
