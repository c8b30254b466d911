"""The one boundary where ledger (budget/) exceptions become dpquery errors."""
from __future__ import annotations

import logging
from contextlib import contextmanager

from budget import errors as ledger
from dpquery import errors


class LedgerUnavailable(errors.DPQueryError):
    """The ledger cannot be reached (database down or restarting, ledger missing or replaced).

    No answer is computed without a charge: the request stopped before any
    noise was drawn, or its answer was withheld because the charge could not
    be confirmed (then the charge stays, and a retry of the same request is
    not charged twice).
    """

    status, code = 503, "ledger_unavailable"


RETRY_AFTER_SECONDS = 5
log = logging.getLogger("dpquery.ledger")


@contextmanager
def map_ledger_errors():
    """Re-raise ledger refusals as errors with an HTTP status and stable code."""
    try:
        yield
    except ledger.LedgerError as exc:
        mapped = to_dpquery_error(exc)
        if mapped is None:
            raise  # a bug (e.g. an invalid transition): the app logs it and answers 500
        raise mapped from None


def to_dpquery_error(exc: ledger.LedgerError) -> errors.DPQueryError | None:
    """The dpquery error (status, code, message) for a ledger error; None for a bug."""
    if isinstance(exc, ledger.BudgetExhausted):
        return errors.BudgetExhausted(
            str(exc), requested=exc.requested.to_json(), remaining=exc.remaining.to_json(),
            limit=exc.limit, dataset=exc.dataset)
    if isinstance(exc, ledger.PartnerSuspended):
        return errors.Forbidden(str(exc))
    if isinstance(exc, (ledger.UnknownPartner, ledger.UnknownKey)):
        return errors.NotFound(str(exc))
    if isinstance(exc, ledger.IdempotencyConflict):
        return errors.IdempotencyConflict(
            "this Idempotency-Key was already used for a different query; "
            "use a new key for a new query")
    if isinstance(exc, (ledger.InvalidAmount, ledger.InvalidArgument)):
        return errors.InvalidRequest(str(exc))
    if isinstance(exc, (ledger.LedgerUnavailable, ledger.LedgerFileError)):
        log.warning("ledger unavailable: %s", exc)
        return unavailable()
    return None


def unavailable() -> LedgerUnavailable:
    """503: the partner learns the ledger is down, never where it is or why (that is logged)."""
    err = LedgerUnavailable(
        "the privacy-budget ledger cannot be reached right now; nothing was answered without "
        "a charge. Retry in a few seconds (same Idempotency-Key: never charged twice)",
        retry_after=RETRY_AFTER_SECONDS)
    err.headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return err
