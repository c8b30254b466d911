"""Values, intervals and accuracy of derived answers (derive.py, derive_ratio.py).

Everything here reads a held answer's released values and the public law of
their noise (mechanism and scale, as the answer states them), and the fresh
plan's public description; never the data. Derived values are therefore
post-processing, and whether one is accurate enough depends on noise laws and
the request only, never on released values.
"""
from __future__ import annotations

from dpquery.engine import accuracy_plan, intervals
from dpquery.engine.query import AccuracyTarget
from dpquery.present import amount_json, spend_amount

POST = ("order_by", "limit", "select", "having")  # post-processing of released rows
ROUNDING = 2e-5  # released scales are shown to 6 digits and read back rounded up


def plain(query: dict) -> bool:
    """No HAVING, ORDER BY, LIMIT or computed columns: every public key's cell is there."""
    return not any(query.get(k) for k in POST)


def copied(alias: str, src: str, cell: dict) -> dict:
    return {alias: cell[src], f"{alias}_ci_low": cell[f"{src}_ci_low"],
            f"{alias}_ci_high": cell[f"{src}_ci_high"]}


def laws_of(entries: list, fresh: dict, alias: str) -> dict:
    """The released statistics' noise laws by role (units from the fresh plan's statistics)."""
    laws = {}
    for e in entries:
        column = alias if e["statistic"] == "value" else f"{alias}.{e['statistic']}"
        laws[e["statistic"]] = law(e, fresh[column].stat.unit)
    return laws


def law(entry: dict, unit: float) -> intervals.Noise:
    """One released statistic's noise law from its public description in an answer."""
    return intervals.Noise("Gaussian" in entry["mechanism"],
                           entry["scale"] * (1 + 1e-5),  # shown to 6 digits: round up
                           unit if entry["mechanism"].startswith("Integer") else None)


def limit_for(plan, alias: str, strictly: bool = False):
    """Whether a derived half-width is accurate enough for `alias`.

    The request's accuracy target, for the aggregate it names, or else a fresh
    answer's half-width at the planned spend. A rephrasing of the same cells
    (e.g. a new alias) is derived only when strictly more accurate than a
    fresh answer: as before, a merely rephrased query is a new query, charged.
    """
    budget = plan.request.budget
    assumed = getattr(budget, "assumed_group_size", None)
    fresh = accuracy_plan.expected_halfwidth(plan, alias, assumed)
    if strictly:
        return lambda width: width is not None and width < fresh * (1 - 1e-4)
    bound = fresh * (1 + ROUNDING)
    if isinstance(budget, AccuracyTarget) and \
            (budget.aggregate or plan.request.query.aggregates[0].alias) == alias:
        bound = max(bound, budget.within)
    return lambda width: width is not None and width <= bound


def scales_ok(laws: dict, plan, alias: str, strictly: bool) -> bool:
    """Copied cells of kinds without a promised half-width (quantiles, spreads): every
    released part has the fresh plan's law family and a scale no larger."""
    fresh = {sp.stat.role: sp for sp in plan.stats if sp.stat.aggregate == alias}
    for role, law in laws.items():
        sp = fresh[role]
        if law.gaussian != ("Gaussian" in sp.distribution):
            return False
        if not (law.scale < sp.scale * (1 - 1e-4) if strictly
                else law.scale <= sp.scale * (1 + ROUNDING)):
            return False
    return True


def ratio_width(num: intervals.Noise, den: intervals.Noise, plan, alias: str,
                centre: float | None = None) -> float:
    """The half-width a ratio's interval has under these released laws, for groups of
    the size the request assumes (as accuracy_plan.expected_halfwidth for a fresh answer).
    `centre`: what the numerator's values were summed minus (default: the fresh plan's)."""
    agg = next(a for a in plan.request.query.aggregates if a.alias == alias)
    size = accuracy_plan.group_size(agg.kind, getattr(plan.request.budget, "assumed_group_size", None))
    if centre is None:
        centre = fresh_centre(plan, alias)
    magnitude = accuracy_plan.ratio_magnitude(plan.table, agg, centre)
    return intervals.expected_halfwidth(num, den, magnitude, size, plan.request.confidence)


def fresh_centre(plan, alias: str) -> float:
    """What a fresh answer's ratio numerator sums values minus."""
    return next(sp for sp in plan.stats if sp.stat.column == f"{alias}.num").stat.center


def same_centre(entries: list, plan, alias: str, kind: str) -> bool:
    """Whether a held ratio's numerator was summed minus the centre a fresh one uses.

    Answers record it (`center` in the numerator's noise entry); before that was
    recorded, an AVG was already centred on the clamp midpoint (as now) and a
    PURCHASE_RATE's numerator was not centred (0)."""
    num = next((e for e in entries if e["statistic"] == "num"), None)
    if num is None:
        return False
    held = num.get("center", 0.0 if kind == "purchase_rate" else fresh_centre(plan, alias))
    return held == fresh_centre(plan, alias)


def released(cell: dict, src: str, held: float, non_negative: bool) -> float | None:
    """A cell's released (unclipped) value: one shown as 0 was clipped after the noise
    and is read back from its interval; None when the whole interval was clipped (the
    draw was below −half-width: only an upper bound is known)."""
    value, high = cell[src], cell[f"{src}_ci_high"]
    if not non_negative or value > 0:
        return value
    return high - held if high > 0 else None


def summed(alias: str, values: list, held: float, width: float, non_negative: bool) -> dict:
    """Σ of released cells ± the sum's half-width. A cell whose whole interval was
    clipped (None) counts as −half-width (its draw was lower) and leaves the low end at 0."""
    total = sum(-held if v is None else v for v in values)
    censored = None in values
    low, high = total - width, total + width
    if non_negative:
        total, low, high = max(total, 0.0), 0.0 if censored else max(low, 0.0), max(high, 0.0)
    return {alias: total, f"{alias}_ci_low": low, f"{alias}_ci_high": high}


def answer_of(rows: list, sources: list, note: str, noise: dict, plan, describe) -> dict:
    """A derived answer: the fresh plan's description, zero cost, the released noise laws
    per aggregate (noise[alias] = (entries, half-width or None)), `derived_from`."""
    answer = {"rows": rows, **describe(plan)}
    answer["cost"] = amount_json(spend_amount(plan.measure, 0))
    for info in answer["aggregates"]:
        entries, width = noise[info["alias"]]
        info["spend"] = answer["cost"]
        info["noise"] = entries
        if width is not None:
            info["expected_halfwidth"] = width
    answer["derived_from"] = sources
    answer["notes"] = answer["notes"] + [
        note + ". Values estimate the held queries' contribution-bounded values. Send "
        "\"derive\": false to pay for a fresh answer instead."]
    return answer
