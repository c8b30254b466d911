"""Shared by the views: readable failures, error pages and template helpers."""
from __future__ import annotations

from flask import current_app, render_template

from dpquery.errors import InternalError
from dpquery.web import fmt
from dpquery.web.blueprint import web_bp


def failure() -> InternalError:
    """An unexpected exception: logged with its traceback, shown as 'this is a bug'."""
    current_app.logger.exception("web console: unexpected error")
    return InternalError()


web_bp.add_app_template_filter(fmt.number, "number")
web_bp.add_app_template_filter(fmt.when, "when")
web_bp.add_app_template_filter(fmt.amount_number, "spend")
web_bp.add_app_template_filter(lambda a: fmt.amount(a, None), "amount")
web_bp.add_app_template_global(fmt.describe_request, "describe")


@web_bp.app_template_global()
def amount_text(amount: dict) -> str:
    """A ledger amount (fraction strings) as 'ε=0.5' (non-zero parts only)."""
    parts = [fmt.amount(amount, n) for n in ("epsilon", "delta", "rho") if amount.get(n, "0") != "0"]
    return ", ".join(parts) or "nothing"


@web_bp.errorhandler(403)
def _forbidden(_err):
    return render_template("error.html", title="Not for this account",
                           message="This page is for another kind of account. Sign in with "
                                   "the right key."), 403


@web_bp.errorhandler(404)
def _not_found(_err):
    return render_template("error.html", title="Page not found",
                           message="There is no page at this address."), 404
