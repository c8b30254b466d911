"""Administrator endpoints: everything `dpquery admin` does, over HTTP.

    GET    /v1/admin/partners                    list partners
    POST   /v1/admin/partners                    create one (its first key, shown once)
    GET    /v1/admin/partners/<id>               status, budgets, spent, keys
    POST   /v1/admin/partners/<id>/budget        set (not add to) a budget
    POST   /v1/admin/partners/<id>/suspend       suspend (keys stop working)
    POST   /v1/admin/partners/<id>/resume        resume
    POST   /v1/admin/partners/<id>/keys          rotate: a new key, shown once
    POST   /v1/admin/keys                        a new administrator key, shown once
    DELETE /v1/admin/keys/<key_id>               revoke a key
    PUT    /v1/admin/global-cap/<dataset>        cap all partners together
    GET    /v1/admin/ledger?partner=&since=      charges (reservations)
    GET    /v1/admin/audit?partner=&since=&outcome=   the audit log

Every write names the administrator's key id as the actor in the audit log.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, request

from budget.amounts import Amount, parse_amount, parse_amount_text
from dpquery.http.api import amount_json, json_body
from dpquery.http.auth import actor, admin_required, state
from dpquery.errors import InvalidRequest, NotFound, PartnerExists
from dpquery.partner_names import existing_partner
from dpquery.ledger_errors import map_ledger_errors

bp = Blueprint("admin_api", __name__, url_prefix="/v1/admin")
bp.before_request(admin_required(lambda: None))

ONCE = "store this key now: it is shown only once and cannot be recovered"
AMOUNT_FIELDS = ("epsilon", "rho", "delta")


def ledger():
    return state().service.ledger


@bp.get("/partners")
def list_partners():
    with map_ledger_errors():
        return {"partners": [partner_json(p) for p in ledger().list_partners()]}


@bp.post("/partners")
def create_partner():
    body = _fields(json_body(), {"name", "budgets", "per_query_cap", "purposes", "reason"},
                   required={"name"})
    budgets = body.get("budgets") or {}
    if not isinstance(budgets, dict):
        raise InvalidRequest('budgets must be an object from dataset name to amount, '
                             'e.g. {"purchases": {"epsilon": 3}}')
    purposes = body.get("purposes") or []
    if not isinstance(purposes, list):
        raise InvalidRequest('purposes must be a list such as ["pricing research"]')
    with map_ledger_errors():
        _refuse_existing(body["name"])
        amounts = {_dataset(d): amount_from(a, f"budgets.{d}") for d, a in budgets.items()}
        cap = body.get("per_query_cap")
        cap = None if cap is None else amount_from(cap, "per_query_cap")
        pid, key = ledger().create_partner(body["name"], amounts, cap, purposes, actor(),
                                           body.get("reason") or "created over HTTP")
        detail = partner_detail(pid)
    return {**detail, "key": key, "key_id": key.split("_")[1], "warning": ONCE}, 201


@bp.get("/partners/<partner_id>")
def show_partner(partner_id: str):
    with map_ledger_errors():
        return partner_detail(partner_id)


@bp.post("/partners/<partner_id>/budget")
def set_budget(partner_id: str):
    body = _fields(json_body(), {"dataset", "reason", *AMOUNT_FIELDS},
                   required={"dataset", "reason"})
    with map_ledger_errors():
        b = ledger().set_budget(partner_id, _dataset(body["dataset"]), amount_from(body, "body"),
                                actor(), body["reason"])
    return budget_json(b)


@bp.post("/partners/<partner_id>/suspend")
def suspend(partner_id: str):
    body = _fields(json_body(), {"reason"}, required={"reason"})
    with map_ledger_errors():
        return partner_json(ledger().suspend(partner_id, actor(), body["reason"]))


@bp.post("/partners/<partner_id>/resume")
def resume(partner_id: str):
    body = _fields(_optional_body(), {"reason"})
    with map_ledger_errors():
        return partner_json(ledger().resume(partner_id, actor(),
                                            body.get("reason") or "resumed over HTTP"))


@bp.post("/partners/<partner_id>/keys")
def rotate_key(partner_id: str):
    with map_ledger_errors():
        key = ledger().rotate_key(partner_id, actor())
    return {"partner_id": partner_id, "key_id": key.split("_")[1], "key": key,
            "warning": ONCE + "; older keys stay valid until revoked"}, 201


@bp.post("/keys")
def create_admin_key():
    with map_ledger_errors():
        key = ledger().create_admin_key(actor())
    return {"key_id": key.split("_")[1], "key": key, "role": "admin", "warning": ONCE}, 201


@bp.delete("/keys/<key_id>")
def revoke_key(key_id: str):
    reason = request.args.get("reason", "revoked over HTTP")
    with map_ledger_errors():
        info = ledger().revoke_key(key_id, actor(), reason)
    return key_json(info)


@bp.put("/global-cap/<dataset>")
def global_cap(dataset: str):
    body = _fields(json_body(), {"reason", "cap", *AMOUNT_FIELDS}, required={"reason"})
    remove = "cap" in body
    if remove and body["cap"] is not None:
        raise InvalidRequest('send "cap": null to remove the cap, or epsilon/rho/delta to set it')
    with map_ledger_errors():
        amount = None if remove else amount_from(body, "body")
        cap, spent = ledger().set_global_cap(_dataset(dataset, NotFound), amount, actor(), body["reason"])
    return {"dataset": dataset, "cap": amount_json(cap), "spent": amount_json(spent)}


@bp.get("/ledger")
def charges():
    partner, since = request.args.get("partner"), _since()
    with map_ledger_errors():
        rows = ledger().reservations(partner)
    rows = [r for r in rows if since is None or _utc(r.created_at) >= since]
    return {"charges": [{"query_id": r.id, "partner_id": r.partner_id, "dataset": r.dataset,
                         "request_id": r.request_id, "status": r.status, "charged": r.charged,
                         "amount": amount_json(r.amount), "created_at": r.created_at,
                         "updated_at": r.updated_at} for r in rows]}


@bp.get("/audit")
def audit():
    partner, since, outcome = request.args.get("partner"), _since(), request.args.get("outcome")
    with map_ledger_errors():
        entries = ledger().ledger_entries(partner, since)
    return {"entries": [e.to_json() for e in entries if outcome in (None, e.outcome)]}


# -- JSON forms -------------------------------------------------------------------

def partner_json(p) -> dict:
    return {"id": p.id, "name": p.name, "status": p.status, "purposes": list(p.purposes),
            "per_query_cap": amount_json(p.per_query_cap), "created_at": p.created_at}


def partner_detail(partner_id: str) -> dict:
    led = ledger()
    return {**partner_json(led.get_partner(partner_id)),
            "budgets": [budget_json(b) for b in led.budget_summary(partner_id)],
            "keys": [key_json(k) for k in led.list_keys(partner_id)]}


def budget_json(b) -> dict:
    return {"dataset": b.dataset, "budget": amount_json(b.budget), "spent": amount_json(b.spent),
            "remaining": amount_json(b.remaining), "global_cap": amount_json(b.global_cap),
            "global_spent": amount_json(b.global_spent)}


def key_json(k) -> dict:
    return {"key_id": k.key_id, "role": k.role, "partner_id": k.partner_id,
            "created_at": k.created_at, "created_by": k.created_by, "revoked_at": k.revoked_at}


# -- request parsing -------------------------------------------------------------

def amount_from(doc, where: str) -> Amount:
    """{"epsilon": 0.5} or {"epsilon": "0.1"} (exact decimal text) -> Amount."""
    if not isinstance(doc, dict):
        raise InvalidRequest(f'{where} must be an object such as {{"epsilon": 1.0}}')
    parts = {k: doc[k] for k in AMOUNT_FIELDS if doc.get(k) is not None}
    if not ({"epsilon", "rho"} & set(parts)):
        raise InvalidRequest(f'{where} needs "epsilon" (or "rho" on zCDP datasets), '
                             'e.g. {"epsilon": 1.0}')
    unknown = set(doc) - set(AMOUNT_FIELDS) if where != "body" else set()
    if unknown:
        raise InvalidRequest(f"{where}: unknown field {sorted(unknown)[0]!r}; "
                             "expected epsilon, rho, delta")
    return Amount(**{k: parse_amount_text(v, k) if isinstance(v, str) else parse_amount(v, k)
                     for k, v in parts.items()})


def _fields(body: dict, allowed: set, required: set = frozenset()) -> dict:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; expected: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(body))
    if missing:
        raise InvalidRequest(f"missing field {missing[0]!r}; required: {', '.join(sorted(required))}")
    for name in ("name", "reason", "dataset"):
        if name in body and not isinstance(body[name], str):
            raise InvalidRequest(f"{name!r} must be a string")
    return body


def _refuse_existing(name: str) -> None:
    """A retried script must not create a second partner (and budget) under the same name."""
    taken = existing_partner(ledger(), name)
    if taken is not None:
        raise PartnerExists(f"a partner named {name!r} already exists (id {taken!r}); read it "
                            f"with GET /v1/admin/partners/{taken} and change its budget with "
                            f"POST /v1/admin/partners/{taken}/budget", partner_id=taken)


def _optional_body() -> dict:
    return json_body() if request.get_data(cache=True).strip() else {}


def _dataset(name, error=InvalidRequest) -> str:
    known = state().service.settings.dataset_names
    if name not in known:
        raise error(f"unknown dataset {name!r}; known datasets: {', '.join(known)}")
    return name


def _since() -> datetime | None:
    text = request.args.get("since")
    if not text:
        return None
    try:
        return _utc(text)
    except ValueError:
        raise InvalidRequest(f"since={text!r} is not an ISO date or time; "
                             "use e.g. 2025-01-31 or 2025-01-31T12:00:00Z") from None


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
