"""Pages without login: landing, sign in / out, and the public transparency page."""
from __future__ import annotations

import math

from flask import flash, g, make_response, redirect, render_template, request, url_for

from budget.errors import PartnerSuspended
from dpquery.web import charts, fmt
from dpquery.web.blueprint import web_bp
from dpquery.web.sessions import deps, sign_in, sign_out
from dpquery.web.shared import server_setting, shared_store
from dpquery.web.throttle import LoginThrottle, scopes

HOME = {"partner": "web.console", "admin": "web.admin"}


@web_bp.get("/")
def landing():
    if g.get("user"):
        return redirect(url_for(HOME[g.user.role]))
    return render_template("landing.html")


@web_bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html")
    key = request.form.get("api_key", "").strip()
    counters, throttle = scopes(request.remote_addr, key), _throttle()
    wait = throttle.wait(counters)
    if wait:
        return _locked_out(wait)
    try:
        principal = deps().ledger.authenticate(key) if key else None
    except PartnerSuspended:
        return render_template("login.html", error="This organisation's access is suspended. "
                               "A budget administrator must resume it."), 403
    if principal is None:
        throttle.failed(counters)
        return render_template("login.html", error="That key is not valid: it may be mistyped, "
                               "revoked, or not an API key of this service."), 401
    sign_in(principal)
    return redirect(url_for(HOME[principal.role]))


def _throttle() -> LoginThrottle:
    return LoginThrottle(shared_store(), server_setting("login_failures_per_ip"),
                         server_setting("login_failures_per_key"),
                         server_setting("login_lockout_seconds"))


def _locked_out(seconds: int):
    minutes = max(1, math.ceil(seconds / 60))
    response = make_response(render_template(
        "login.html", error="Too many failed sign-ins from this address or for this key. "
                            f"Try again in {minutes} minute(s)."), 429)
    response.headers["Retry-After"] = str(seconds)
    return response


@web_bp.post("/logout")
def logout():
    sign_out()
    flash("You are signed out.", "info")
    return redirect(url_for("web.login"))


@web_bp.get("/transparency")
def transparency():
    """Configuration and ledger amounts only: no data value is read here."""
    service, ledger = deps().service, deps().ledger
    datasets = service.datasets()
    reservations = ledger.reservations()
    partners = [_partner(p, datasets) for p in ledger.list_partners()]
    return render_template("transparency.html", datasets=[_dataset(d, reservations)
                                                          for d in datasets],
                           partners=partners, names={p["id"]: p["name"] for p in partners})


def _dataset(d: dict, reservations) -> dict:
    ledger = deps().ledger
    name = fmt.component(d["measure"])
    cap, spent = ledger.global_position(d["name"])
    return {**d, "symbol": fmt.SYMBOLS[name], "component": name,
            "cap": fmt.amount_number(cap.components()[name]) if cap is not None else None,
            "spent": fmt.amount_number(spent.components()[name]),
            "cap_share": fmt.ratio(spent, cap, name) if cap is not None else None,
            "chart": charts.spend_over_time(reservations, d["name"], d["measure"], cap),
            "keys": [c for c in d["columns"] if c.get("values")],
            "numbers": [c for c in d["columns"] if c.get("bounds")]}


def _partner(p, datasets) -> dict:
    measures = {d["name"]: d["measure"] for d in datasets}
    rows = []
    for b in deps().ledger.budget_summary(p.id):
        name = fmt.component(measures.get(b.dataset, "pure"))
        eps = float(b.spent.components()[name])
        rows.append({"dataset": b.dataset, "symbol": fmt.SYMBOLS[name],
                     "budget": fmt.amount_number(b.budget.components()[name]),
                     "spent": fmt.amount_number(b.spent.components()[name]),
                     "share": fmt.ratio(b.spent, b.budget, name),
                     "factor": likelihood_factor(eps) if name == "epsilon" else None})
    return {"id": p.id, "name": p.name, "status": p.status, "purposes": p.purposes,
            "since": p.created_at, "budgets": rows}


def likelihood_factor(epsilon: float) -> str:
    """e^ε in words: how much more likely any conclusion about one shopper can become."""
    if epsilon > math.log(1000):
        return "more than 1,000"
    factor = math.exp(epsilon)
    return f"{factor:.1f}" if factor < 10 else f"{factor:,.0f}"
