"""One presenter for numbers and privacy amounts: the API's JSON, the CLI, the web pages.

Amounts in JSON are exact: each component a fraction string ("1/10") plus a
readable `text` ("ε=0.1"). People read amounts through `amount_text` and
released values through `number`, whichever interface shows them.
"""
from __future__ import annotations

import math
from fractions import Fraction

from budget.amounts import Amount, format_fraction
from budget.records import DatasetBudget

SYMBOLS = {"epsilon": "ε", "rho": "ρ", "delta": "δ"}
LIMIT_WHY = {
    "partner": "your own budget on this dataset",
    "global": "the cap all partners share on this dataset is nearer to being spent "
              "than your own budget",
}


def exact(value) -> Fraction:
    """0.1, "0.1", "1/10" or Fraction(1, 10) -> Fraction(1, 10) (floats by their repr)."""
    if isinstance(value, float):
        return Fraction(repr(value))
    return Fraction(value)


def fraction_text(value) -> str:
    """An amount component for reading: '0.5', '2', '≈0.333333' (exact when short)."""
    text = format_fraction(exact(value))
    if "." in text and not text.startswith("≈"):
        text = text.rstrip("0").rstrip(".")
    return text


def amount_text(value, name: str | None = None) -> str:
    """'ε=0.5' (or 'ε=0.5, δ=0.000001') from an Amount, its JSON form or a number.

    `name` picks one component; by default the non-zero ones are shown.
    """
    if not isinstance(value, (Amount, dict)):
        return f"{SYMBOLS.get(name or 'epsilon')}={fraction_text(value)}"
    parts = value.components() if isinstance(value, Amount) else \
        {k: v for k, v in value.items() if k in SYMBOLS}
    names = [name] if name else [n for n in SYMBOLS if exact(parts.get(n, 0))] or ["epsilon"]
    return ", ".join(f"{SYMBOLS[n]}={fraction_text(parts.get(n, 0))}" for n in names)


def amount_json(amount: Amount | None) -> dict | None:
    """Exact components as fraction strings, plus a readable `text`.

    A zCDP amount also reports the (ε, δ)-DP guarantee its ρ implies (at δ=1e-6).
    """
    if amount is None:
        return None
    out = {**amount.to_json(), "text": amount_text(amount)}
    if amount.rho:
        eps, delta = amount.implied_dp()
        out["implied"] = {"epsilon": eps, "delta": delta}
    return out


def spend_amount(measure: str, value, delta=0) -> Amount:
    """A planned spend (floats from the planner, by their repr) as an exact Amount."""
    return Amount(**{measure: exact(value), "delta": exact(delta)})


def number(value) -> str:
    """A released value for reading: thousands separators, a few significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, str):
        return value
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def share(value) -> str:
    """A proportion as a percentage ('12.5%'); 'unknown' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "unknown"
    return f"{value:.1%}"


# -- budget positions --------------------------------------------------------------

def smaller(a: Amount, b: Amount) -> Amount:
    """Component-wise minimum (exact): a - max(a - b, 0)."""
    return a.saturating_sub(a.saturating_sub(b))


def position(b: DatasetBudget, spend: Amount | None = None) -> dict:
    """What a partner may still spend on a dataset, the limit that binds, and why.

    `remaining` is the smaller of the partner's own remaining budget and what
    remains under the dataset's global cap (shared by all partners). With a
    `spend`, `queries_left` estimates how many more queries of that spend fit.
    """
    own = b.budget.saturating_sub(b.spent)
    shared = None if b.global_cap is None else b.global_cap.saturating_sub(b.global_spent)
    remaining = own if shared is None else smaller(own, shared)
    limit = "partner" if shared is None or own <= shared else "global"
    out = {"remaining": amount_json(remaining), "limit": limit, "why": LIMIT_WHY[limit],
           "partner_remaining": amount_json(own),
           "global": None if shared is None else {
               "cap": amount_json(b.global_cap), "spent": amount_json(b.global_spent),
               "remaining": amount_json(shared)}}
    if spend is not None:
        out["queries_left"] = {"spend": amount_json(spend), "count": fits(remaining, spend)}
    return out


def fits(remaining: Amount, spend: Amount) -> int:
    """How many queries costing `spend` fit in `remaining` (components spend uses)."""
    counts = [r // s for r, s in zip(remaining.components().values(),
                                     spend.components().values()) if s]
    return int(min(counts)) if counts else 0


def remaining_json(b: DatasetBudget, spend: Amount | None = None) -> dict:
    """An answer's `remaining`: the exact amount, its limit, and how many more such queries fit."""
    pos = position(b, spend)
    out = {**pos["remaining"], "limit": pos["limit"]}
    if spend is not None:
        out["queries_like_this"] = pos["queries_left"]["count"]
    return out
