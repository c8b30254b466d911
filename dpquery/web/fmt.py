"""Formatting for people: times, queries and errors. Numbers and privacy amounts
come from the one presenter, `dpquery.present` (the CLI and admin CLI use it too)."""
from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction

from budget.amounts import Amount
from dpquery import present
from dpquery.errors import DPQueryError
from dpquery.present import SYMBOLS, number  # noqa: F401  (templates and pages use them)
LIMIT_WORDS = {
    "partner": "remains of your budget",
    "global": "remains under the cap shared by all partners",
    "per_query": "is allowed per query",
}
FIXES = {
    "partner": "Ask a budget administrator to raise your budget, or ask for less (a smaller ε, "
               "or a looser accuracy target).",
    "global": "The dataset's total budget across all partners is nearly spent; "
              "ask a budget administrator.",
    "per_query": "Ask for less per query, or ask an administrator to raise your per-query cap.",
}


def component(measure: str) -> str:
    """The budget component a dataset charges: 'epsilon' (pure) or 'rho' (zCDP)."""
    return "rho" if measure == "zcdp" else "epsilon"


def amount_number(value) -> str:
    """0.5, Fraction(1, 2), '1/2' -> '0.5' (exact when short, else ≈)."""
    return present.fraction_text(value)


def amount(value, name: str | None = "epsilon") -> str:
    """'ε=0.5' from an Amount, a JSON dict of fraction strings or a number."""
    return present.amount_text(value, name)


def measure_of(amount_json: dict) -> str:
    """'rho' when a JSON amount charges ρ, else 'epsilon'."""
    return "rho" if Fraction(str((amount_json or {}).get("rho", 0))) else "epsilon"


def ratio(part: Amount | Fraction, whole: Amount | Fraction, name: str = "epsilon") -> float:
    """part/whole in [0, 1] for bars and gauges (0 when whole is 0)."""
    if isinstance(part, Amount):
        part, whole = part.components()[name], (whole.components()[name] if whole else 0)
    return 0.0 if not whole else max(0.0, min(1.0, float(Fraction(part) / Fraction(whole))))


def compact(value: float) -> str:
    """An axis label: 25000 -> '25k', 1500000 -> '1.5M'."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def when(text: str | None) -> str:
    """ISO UTC time -> '2025-01-31 14:05 UTC'."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def error_message(err: DPQueryError) -> str:
    """A refusal in words, with the numbers for budget refusals."""
    if err.code == "budget_exhausted":
        return budget_message(err.details)
    return err.message


def budget_message(details: dict) -> str:
    requested, remaining = details.get("requested", {}), details.get("remaining", {})
    limit = details.get("limit", "partner")
    name = next((n for n in ("epsilon", "rho", "delta")
                 if Fraction(requested.get(n, "0")) > Fraction(remaining.get(n, "0"))), "epsilon")
    first = "Not enough privacy budget" if limit != "per_query" else "Too much for one query"
    return (f"{first}: this query needs {amount(requested, name)} but only "
            f"{amount(remaining, name)} {LIMIT_WORDS.get(limit, 'remains')}"
            f"{_on(details.get('dataset'))}. {FIXES.get(limit, '')}").strip()


def _on(dataset) -> str:
    return f" on “{dataset}”" if dataset else ""


# -- queries in words ---------------------------------------------------------------

def describe_request(request) -> str:
    """The canonical request JSON (from the ledger) as a short readable line."""
    if not isinstance(request, dict) or "query" not in request:
        return str(request)[:200]
    query = request["query"]
    text = ", ".join(_aggregate(a) for a in query.get("aggregates", []))
    if query.get("group_by"):
        text += " by " + ", ".join(query["group_by"])
    if query.get("where"):
        text += " where " + predicate(query["where"])
    return text


def _aggregate(agg: dict) -> str:
    kind = agg.get("kind")
    if kind == "count":
        return "COUNT(*)"
    if kind == "count_customers":
        return "COUNT(DISTINCT customers)"
    if kind == "quantile":
        return f"QUANTILE({agg.get('column')}, {agg.get('quantile')})"
    if kind == "purchase_rate":
        return f"PURCHASE_RATE({predicate(agg.get('condition'))})"
    return f"{str(kind).upper()}({agg.get('column')})"


def predicate(node) -> str:
    if not isinstance(node, dict):
        return ""
    kind = node.get("node")
    if kind in ("And", "Or"):
        return "(" + f" {kind.upper()} ".join(predicate(p) for p in node["items"]) + ")"
    if kind == "Not":
        return "NOT " + predicate(node["item"])
    neg = "NOT " if node.get("negated") else ""
    if kind == "InList":
        return f"{node['column']} {neg}IN ({', '.join(_literal(v) for v in node['values'])})"
    if kind == "Between":
        return f"{node['column']} {neg}BETWEEN {_literal(node['low'])} AND {_literal(node['high'])}"
    return f"{node.get('column')} {node.get('op')} {_literal(node.get('value'))}"


def _literal(value) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)
