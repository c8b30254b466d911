"""The administrator console: partners, budgets, keys, caps, spend and the audit log."""
from __future__ import annotations

import json

from flask import flash, g, make_response, redirect, render_template, request, url_for

from budget.amounts import Amount, parse_amount_text
from dpquery.errors import DPQueryError, InvalidRequest
from dpquery.ledger_errors import map_ledger_errors
from dpquery.web import charts, fmt
from dpquery.web.blueprint import web_bp
from dpquery.web.sessions import deps, require
from dpquery.web.views import amount_text, failure

AUDIT_ROWS = 200


@web_bp.get("/admin")
@require("admin")
def admin():
    return _page()


@web_bp.post("/admin/partners")
@require("admin")
def create_partner():
    form = request.form
    def act():
        budgets = {d["name"]: _amount(form.get(f"budget_{d['name']}", ""), d["measure"])
                   for d in _datasets() if form.get(f"budget_{d['name']}", "").strip()}
        purposes = [p.strip() for p in form.get("purposes", "").splitlines() if p.strip()]
        partner_id, key = deps().ledger.create_partner(
            form.get("name", "").strip(), budgets, purposes=purposes, actor=g.user.actor,
            reason=_reason())
        return _show_key(partner_id, key, "Partner created")
    return _do(act)


@web_bp.post("/admin/partners/<partner_id>/budget")
@require("admin")
def set_budget(partner_id: str):
    def act():
        dataset = request.form.get("dataset", "")
        measure = next((d["measure"] for d in _datasets() if d["name"] == dataset), "pure")
        result = deps().ledger.set_budget(partner_id, dataset,
                                          _amount(request.form.get("amount", ""), measure),
                                          actor=g.user.actor, reason=_reason())
        name = fmt.component(measure)
        return _done(f"Budget of {partner_id} on {dataset} is now "
                     f"{fmt.amount(result.budget, name)} ({fmt.amount(result.remaining, name)} "
                     f"remaining).", partner_id)
    return _do(act)


@web_bp.post("/admin/partners/<partner_id>/suspend")
@require("admin")
def suspend(partner_id: str):
    def act():
        deps().ledger.suspend(partner_id, actor=g.user.actor, reason=_reason())
        return _done(f"{partner_id} is suspended: its keys stop working at once.", partner_id)
    return _do(act)


@web_bp.post("/admin/partners/<partner_id>/resume")
@require("admin")
def resume(partner_id: str):
    def act():
        deps().ledger.resume(partner_id, actor=g.user.actor, reason=_reason())
        return _done(f"{partner_id} is active again.", partner_id)
    return _do(act)


@web_bp.post("/admin/partners/<partner_id>/keys")
@require("admin")
def rotate_key(partner_id: str):
    def act():
        key = deps().ledger.rotate_key(partner_id, actor=g.user.actor)
        return _show_key(partner_id, key, "New key issued (older keys still work until revoked)")
    return _do(act)


@web_bp.post("/admin/keys/<key_id>/revoke")
@require("admin")
def revoke_key(key_id: str):
    def act():
        info = deps().ledger.revoke_key(key_id, actor=g.user.actor,
                                        reason=request.form.get("reason", "").strip())
        return _done(f"Key {key_id} is revoked.", info.partner_id)
    return _do(act)


@web_bp.post("/admin/caps/<dataset>")
@require("admin")
def set_cap(dataset: str):
    def act():
        measure = next((d["measure"] for d in _datasets() if d["name"] == dataset), "pure")
        text = request.form.get("amount", "").strip()
        cap = _amount(text, measure) if text else None
        deps().ledger.set_global_cap(dataset, cap, actor=g.user.actor, reason=_reason())
        return _done(f"Global cap on {dataset}: "
                     f"{fmt.amount(cap, fmt.component(measure)) if cap else 'none'}.", None)
    return _do(act)


# -- doing and showing ------------------------------------------------------------------

def _do(action):
    """Run an admin action; ledger refusals become a readable message on the page."""
    try:
        with map_ledger_errors():
            return action()
    except DPQueryError as err:
        return _page(error=fmt.error_message(err)), err.status
    except Exception:
        return _page(error=failure().message), 500


def _done(message: str, partner_id: str | None):
    flash(message, "success")
    return redirect(url_for("web.admin") + (f"#partner-{partner_id}" if partner_id else ""))


def _show_key(partner_id: str, key: str, title: str):
    response = make_response(render_template("key.html", partner_id=partner_id, key=key,
                                             title=title))
    response.headers["Cache-Control"] = "no-store"
    return response


def _reason() -> str:
    reason = request.form.get("reason", "").strip()
    if not reason:
        raise InvalidRequest("Give a reason: it is written to the audit log with your key id.")
    return reason


def _amount(text: str, measure: str) -> Amount:
    name = fmt.component(measure)
    if not text.strip():
        raise InvalidRequest(f"Enter an amount for {fmt.SYMBOLS[name]}, e.g. 1.5.")
    return Amount(**{name: parse_amount_text(text, name)})


def _datasets() -> list[dict]:
    return deps().service.datasets()


def _page(error: str | None = None) -> str:
    ledger = deps().ledger
    datasets, reservations = _datasets(), ledger.reservations()
    partners = [_partner(p, datasets) for p in ledger.list_partners()]
    audit, audit_error = _audit()
    return render_template("admin.html", error=error or audit_error, partners=partners,
                           datasets=[_dataset(d, reservations) for d in datasets],
                           audit=audit, filters=request.args,
                           partner_ids=[p["id"] for p in partners])


def _dataset(d: dict, reservations) -> dict:
    cap, spent = deps().ledger.global_position(d["name"])
    name = fmt.component(d["measure"])
    return {"name": d["name"], "measure": d["measure"], "symbol": fmt.SYMBOLS[name],
            "cap": fmt.amount_number(cap.components()[name]) if cap is not None else None,
            "spent": fmt.amount_number(spent.components()[name]),
            "share": fmt.ratio(spent, cap, name) if cap is not None else None,
            "chart": charts.spend_over_time(reservations, d["name"], d["measure"], cap)}


def _partner(p, datasets) -> dict:
    measures = {d["name"]: d["measure"] for d in datasets}
    budgets = []
    for b in deps().ledger.budget_summary(p.id):
        name = fmt.component(measures.get(b.dataset, "pure"))
        budgets.append({"dataset": b.dataset, "symbol": fmt.SYMBOLS[name],
                        "budget": fmt.amount_number(b.budget.components()[name]),
                        "spent": fmt.amount_number(b.spent.components()[name]),
                        "remaining": fmt.amount_number(b.remaining.components()[name]),
                        "share": fmt.ratio(b.spent, b.budget, name)})
    return {"id": p.id, "name": p.name, "status": p.status, "purposes": p.purposes,
            "cap": p.per_query_cap.describe() if p.per_query_cap else None,
            "budgets": budgets, "keys": deps().ledger.list_keys(p.id)}


def _audit():
    partner = request.args.get("partner") or None
    since = request.args.get("since") or None
    try:
        with map_ledger_errors():
            entries = deps().ledger.ledger_entries(partner, since)
    except DPQueryError as err:
        return [], f"Audit filter: {err.message}"
    return [_entry(e) for e in reversed(entries[-AUDIT_ROWS:])], None


def _entry(e) -> dict:
    text, _, version = (e.query_text or "").rpartition("|")
    try:
        query = fmt.describe_request(json.loads(text)) if text.startswith("{") else ""
    except ValueError:
        query = text[:200]
    return {"seq": e.seq, "at": e.at, "actor": e.actor, "partner_id": e.partner_id or "",
            "dataset": e.dataset or "", "outcome": e.outcome.replace("_", " "),
            "amount": "" if e.amount.is_zero() else amount_text(e.amount.to_json()),
            "reason": e.reason, "query": query}
