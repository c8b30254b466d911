"""Accuracy targets: the least spend whose promised half-width meets the target.

A request may state `"accuracy": {"within": w}` instead of a spend. The promise
is `expected_halfwidth`: OpenDP's accuracy of the planned noise for counts and
sums, and for ratios the test-inversion interval (intervals.py) at the worst
ratio the domain allows, for groups of an assumed size. Planning for a target
bisects the spend (each try is a whole plan, read from OpenDP's maps) and
rounds it up to three significant digits. No data is read.
"""
from __future__ import annotations

import math

from dpquery.engine import intervals, plan as planner
from dpquery.engine.catalog import Table
from dpquery.engine.query import SPREADS, AccuracyTarget, Request
from dpquery.errors import AccuracyUnreachable, InvalidQuery


DEFAULT_GROUP_SIZE = {"purchase_rate": 1000, "avg": 10000}


def group_size(kind: str, assumed: int | None) -> int | None:
    """The denominator size a ratio's promised accuracy assumes (None: not a ratio)."""
    if kind not in planner.RATIOS:
        return None
    return assumed if assumed is not None else DEFAULT_GROUP_SIZE[kind]


def expected_halfwidth(plan: planner.Plan, alias: str, assumed: int | None = None) -> float:
    """The promised half-width of one aggregate (ratios: for groups of the assumed size)."""
    sps = {sp.stat.role: sp for sp in plan.stats if sp.stat.aggregate == alias}
    agg = next(a for a in plan.request.query.aggregates if a.alias == alias)
    size = group_size(agg.kind, assumed)
    if agg.kind in SPREADS:
        return math.inf  # depends on the group's size and spread: no promise in advance
    if agg.kind not in planner.RATIOS:
        return sps["value"].accuracy
    magnitude = ratio_magnitude(plan.table, agg, sps["num"].stat.center)
    return intervals.expected_halfwidth(intervals.Noise.of(sps["num"]), intervals.Noise.of(sps["den"]),
                                        magnitude, size, plan.request.confidence)


def ratio_domain(table: Table, agg) -> tuple[float, float]:
    """Where a ratio's true value lies: [0, 1] for a rate, the clamp range for an AVG."""
    if agg.kind == "purchase_rate":
        return 0.0, 1.0
    col = table.column(agg.column)
    return float(col.lower), float(col.upper)


def ratio_magnitude(table: Table, agg, centre: float) -> float:
    """The largest |ratio − centre| the domain allows: the worst case a promise covers
    (the numerator sums values minus `centre`)."""
    lo, hi = ratio_domain(table, agg)
    return max(abs(lo - centre), abs(hi - centre))


def plan_for_accuracy(request: Request, table: Table, target: AccuracyTarget) -> planner.Plan:
    """The least spend (3 significant digits, rounded up) meeting the accuracy target."""
    ds = table.dataset
    aliases = [a.alias for a in request.query.aggregates]
    alias = target.aggregate or aliases[0]
    if alias not in aliases:
        raise InvalidQuery(f"accuracy target names {alias!r}; the query's aggregates are "
                           f"{', '.join(aliases)}")
    if next(a for a in request.query.aggregates if a.alias == alias).kind in ("quantile", *SPREADS):
        raise InvalidQuery(f"an accuracy target cannot be set on {alias!r} (a quantile, "
                           "variance or standard deviation); state epsilon instead")
    request = Request(request.query, request.budget, target.confidence, request.extras)
    cap = ds.max_epsilon_per_query
    mine = target.at_most is not None and target.at_most < cap
    cap = target.at_most if mine else cap

    def width(spend: float) -> float:
        return expected_halfwidth(planner.plan_with_spend(request, table, spend), alias, target.assumed_group_size)

    best = width(cap)
    if best > target.within:
        kind = next(a.kind for a in request.query.aggregates if a.alias == alias)
        size = group_size(kind, target.assumed_group_size)
        unit = f"distinct {table.dataset.privacy_unit}" if kind == "purchase_rate" else "rows"
        assumed = (f" for groups of {size:,} {unit}"
                   " (set assumed_group_size)" if size else "")
        shown = f"±{best:.4g}" if math.isfinite(best) else "no useful bound"
        whose = f"your at_most {cap:g}" if mine else f"the per-query cap {cap:g}"
        raise AccuracyUnreachable(
            f"even {whose} gives {shown} for {alias!r} at "
            f"{target.confidence:.0%}{assumed}; the target ±{target.within:g} cannot be met. "
            "Loosen the target, group by fewer columns"
            + (", filter to larger groups, or raise at_most" if mine else
               ", or filter to larger groups"))
    return planner.plan_with_spend(request, table, _least_spend(width, target.within, cap))


def _least_spend(width, within: float, cap: float) -> float:
    """Bisect for the least spend whose half-width meets `within` (width falls as spend grows)."""
    hi = min(cap, _round_up(cap * width(cap) / within))
    while hi < cap and width(hi) > within:
        hi = min(cap, hi * 1.25)
    lo = hi / 1.25 if hi < cap else 0.0
    for _ in range(10):
        mid = (lo + hi) / 2
        if width(mid) <= within:
            hi = mid
        else:
            lo = mid
    return min(_round_up(hi), cap)


def _round_up(x: float) -> float:
    """Round up to three significant digits, so charges read as 0.0523, not 0.05228..."""
    digits = 2 - math.floor(math.log10(x))
    return math.ceil(x * 10 ** digits) / 10 ** digits
