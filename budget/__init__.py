"""dpquery's privacy-budget ledger. Imports nothing from ``dpquery``.

Public API: :class:`Ledger`, :class:`Amount`, :func:`parse_amount`,
:func:`parse_amount_text`, :func:`rho_to_epsilon` and the errors in
:mod:`budget.errors`.
"""

from budget.amounts import Amount, parse_amount, parse_amount_text, rho_to_epsilon
from budget.errors import (
    BudgetExhausted, IdempotencyConflict, InvalidAmount, InvalidArgument, InvalidTransition,
    LedgerError, LedgerFileError, LedgerMismatch, LedgerMissing, LedgerUnavailable,
    PartnerSuspended, UnknownKey, UnknownPartner,
    UnknownReservation,
)
from budget.ledger import Ledger
from budget.records import AuditEntry, DatasetBudget, KeyInfo, Partner, Principal, Reservation

__all__ = [
    "Amount", "AuditEntry", "BudgetExhausted", "DatasetBudget", "IdempotencyConflict",
    "InvalidAmount", "InvalidArgument", "InvalidTransition", "KeyInfo", "Ledger",
    "LedgerError", "LedgerFileError", "LedgerMismatch", "LedgerMissing",
    "LedgerUnavailable", "Partner", "PartnerSuspended", "Principal",
    "Reservation", "UnknownKey", "UnknownPartner", "UnknownReservation", "parse_amount",
    "parse_amount_text", "rho_to_epsilon",
]
