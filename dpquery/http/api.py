"""Partner endpoints, /healthz and /openapi.json.

    POST /v1/queries            answer a query (charged; repeats are free)
    POST /v1/queries/preview    spend and expected accuracy (free, reads no data)
    GET  /v1/queries            this partner's queries
    GET  /v1/queries/<id>       one stored answer (another partner's: 404)
    GET  /v1/budget             budget, spent and remaining per dataset
    GET  /v1/datasets           schemas, public keys, bounds, policy

Timing: a fresh answer (noise drawn) leaves on a multiple of the time quantum
(50 ms by default) measured from the start of the request, so its response
time does not depend on the noise drawn. Repeats (no noise) are not padded.
"""
from __future__ import annotations

import json
import math
import re
import time

from flask import Blueprint, g, jsonify, request

from dpquery.http.auth import partner_required, principal, state
from dpquery.errors import Forbidden, InvalidRequest
from dpquery.ledger_errors import map_ledger_errors
from budget.amounts import Amount, parse_amount_text
from dpquery.present import amount_json as present_amount, position

bp = Blueprint("api", __name__)

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
EXAMPLE = '{"sql": "SELECT region, COUNT(*) FROM purchases GROUP BY region", "epsilon": 0.5}'


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/openapi.json")
def openapi():
    from dpquery.http.openapi import spec
    return spec()


@bp.post("/v1/queries")
@partner_required
def run_query():
    repeat = False
    try:
        body = json_body()
        partner = principal().partner
        answer = state().service.run(partner.id, body, _idempotency_key(),
                                     _purpose(body, partner))
        repeat = answer.get("repeat", False)
        response = jsonify(answer)  # serialised before the pad: its time is padded too
    finally:  # errors are padded too: one may follow drawn noise
        if not repeat:
            pad_to_quantum(g.started, state().time_quantum)
    return response


@bp.post("/v1/queries/preview")
@partner_required
def preview():
    return state().service.preview(json_body())


@bp.get("/v1/queries")
@partner_required
def history():
    return {"queries": state().service.history(principal().partner_id)}


@bp.get("/v1/queries/<int:query_id>")
@partner_required
def stored_answer(query_id: int):
    return state().service.stored_answer(principal().partner_id, query_id)


@bp.get("/v1/budget")
@partner_required
def budget():
    """Per dataset: budget, spent, remaining (the global cap included), the binding
    limit and why; with ?epsilon=0.2 (or ?rho=) how many more such queries fit."""
    partner = principal().partner
    with map_ledger_errors():
        spend = _spend_arg()
        rows = state().service.ledger.budget_summary(partner.id)
    return {"partner": partner.id, "purposes": list(partner.purposes),
            "per_query_cap": amount_json(partner.per_query_cap),
            "datasets": [{"dataset": b.dataset, "budget": amount_json(b.budget),
                          "spent": amount_json(b.spent), **position(b, spend)}
                         for b in rows]}


def _spend_arg():
    """?epsilon=0.2 or ?rho=0.01: the spend to estimate `queries_left` for (exact)."""
    given = {k: request.args[k] for k in ("epsilon", "rho") if request.args.get(k)}
    if not given:
        return None
    amount = Amount(**{k: parse_amount_text(v, k) for k, v in given.items()})
    if amount.is_zero():
        raise InvalidRequest("?epsilon= (or ?rho=) must be above 0 to estimate queries left")
    return amount


@bp.get("/v1/datasets")
def datasets():
    principal()  # any valid key (partner or admin) may read the public schemas
    return {"datasets": state().service.datasets()}


# -- helpers shared with admin_api ----------------------------------------------

def json_body() -> dict:
    """The request body as a JSON object, or 400 invalid_request saying what is wrong."""
    raw = request.get_data(cache=True)  # 413 when larger than MAX_CONTENT_LENGTH
    if not raw.strip():
        raise InvalidRequest(f"the request body is empty; send a JSON object such as {EXAMPLE}")
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not UTF-8 text; send JSON") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg} at line "
                             f"{exc.lineno}, column {exc.colno}") from None
    except RecursionError:  # the decoder recurses once per nested array or object
        raise InvalidRequest("the request body nests arrays or objects too deeply to read; "
                             "a query needs only a few levels") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object such as {EXAMPLE}")
    return body


def _no_constant(name: str):
    raise InvalidRequest(f"the request body contains {name}, which is not JSON; "
                         "send finite numbers")


def amount_json(amount) -> dict | None:
    """An exact amount as JSON: fractions as strings ("1/10") plus a readable text."""
    return None if amount is None else present_amount(amount)


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest("Idempotency-Key must be 1-128 characters of letters, digits "
                             "and . _ : - (a UUID works)")
    return key


def _purpose(body: dict, partner) -> str | None:
    """The declared purpose: one of the partner's approved purposes (default: the first)."""
    approved = list(partner.purposes)
    purpose = body.get("purpose")
    if purpose is None:
        return approved[0] if approved else None
    if not isinstance(purpose, str) or purpose not in approved:
        raise Forbidden("'purpose' must be one of this partner's approved purposes: "
                        f"{', '.join(map(repr, approved)) or 'none are approved'}",
                        approved_purposes=approved)
    return purpose


def pad_to_quantum(started: float, quantum: float) -> None:
    """Sleep until the time since `started` reaches the next multiple of `quantum`."""
    if quantum <= 0:
        return
    elapsed = time.monotonic() - started
    target = math.ceil(elapsed / quantum) * quantum
    time.sleep(max(0.0, target - elapsed))
