"""How a query's spend is divided among its aggregates, stated exactly.

A query's spend (ε, or ρ on zCDP datasets) is divided like this:

1. With `"bounding_report": true`, 1/10 of it goes to the bounding report.
   With `"bounds": "auto"`, the dataset's `auto_share` (1/10 by default) goes
   first to choosing the row bound (engine/autobound.py); auto queries take
   no bounding report.
2. With private key selection, 1/5 of the rest goes to the thresholded count
   that chooses the keys (plus the dataset's δ).
3. The rest is divided among the aggregates in proportion to their weights
   (1 each by default: an equal split). A ratio (AVG, PURCHASE_RATE) divides
   its share equally between its numerator and denominator.

Example: ε=0.3 over COUNT(*), SUM(amount) and AVG(amount) gives each 1/10;
AVG's numerator and denominator get 1/20 each. With weights 2, 1, 1 the
shares are 3/20, 3/40 and 3/40.

The planner (`engine.plan._shares`) makes the same split in floats for OpenDP;
`tests/test_spend_split.py` checks the two agree.
"""
from __future__ import annotations

from fractions import Fraction

from dpquery.engine import plan as planner
from dpquery.present import exact


def exact_cost(plan) -> Fraction:
    """The plan's cost (ε or ρ) as the exact amount the ledger charges."""
    return exact(plan.cost)


def aggregate_shares(plan) -> dict[str, Fraction]:
    """Each aggregate's exact share of the plan's cost, by alias."""
    rest = exact_cost(plan)
    if plan.request.auto_bounds:  # stage 1 of "bounds": "auto" (engine/autobound.py)
        rest -= rest * exact(plan.table.dataset.auto_share)
    if plan.request.bounding_report:
        rest -= rest * exact(planner.REPORT_SHARE)
    if plan.private_keys:
        rest -= rest * exact(planner.KEYS_SHARE)
    aggregates = plan.request.query.aggregates
    whole = sum(a.weight for a in aggregates)
    return {a.alias: rest * a.weight / whole for a in aggregates}


def statistic_shares(plan) -> dict[str, Fraction]:
    """Each released statistic's exact share, by its column name in the plan."""
    per_aggregate = aggregate_shares(plan)
    stats = [sp.stat for sp in plan.stats]
    count = {alias: sum(1 for s in stats if s.aggregate == alias) for alias in per_aggregate}
    return {s.column: per_aggregate[s.aggregate] / count[s.aggregate] for s in stats}
