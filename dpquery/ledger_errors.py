"""The one boundary where ledger (budget/) exceptions become dpquery errors."""
from __future__ import annotations

from contextlib import contextmanager

from budget import errors as ledger
from dpquery import errors


@contextmanager
def map_ledger_errors():
    """Re-raise ledger refusals as errors with an HTTP status and stable code."""
    try:
        yield
    except ledger.BudgetExhausted as exc:
        raise errors.BudgetExhausted(
            str(exc), requested=exc.requested.to_json(), remaining=exc.remaining.to_json(),
            limit=exc.limit, dataset=exc.dataset) from None
    except ledger.PartnerSuspended as exc:
        raise errors.Forbidden(str(exc)) from None
    except ledger.UnknownPartner as exc:
        raise errors.NotFound(str(exc)) from None
    except ledger.UnknownKey as exc:
        raise errors.NotFound(str(exc)) from None
    except ledger.IdempotencyConflict:
        raise errors.IdempotencyConflict(
            "this Idempotency-Key was already used for a different query; "
            "use a new key for a new query") from None
    except (ledger.InvalidAmount, ledger.InvalidArgument) as exc:
        raise errors.InvalidRequest(str(exc)) from None
