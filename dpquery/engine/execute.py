"""Run a plan over the data: the only module that releases noisy values.

Everything after the OpenDP measurement is post-processing of its output
(ratios, intervals from public scales, ORDER BY, LIMIT), which costs no
further privacy.
"""
from __future__ import annotations

import math

import polars as pl

from dpquery.engine import accuracy_plan, engines, intervals, noise, postprocess, spread
from dpquery.engine.plan import RATIOS, Plan, StatPlan
from dpquery.engine.query import SPREADS
from dpquery.engine.vector_plan import stat_sensitivity


def release(plan: Plan) -> pl.DataFrame:
    """Draw the noise: one call per plan, charged beforehand by the caller.

    Privacy contract: if two datasets differ in one customer (all of their
    rows), this release is ε-DP with ε = plan.cost (ρ-zCDP when plan.measure
    is "rho"), as proven by OpenDP's privacy map of `plan.measurement`.
    """
    data = plan.table.frame
    keys, measurements = plan.keys, plan.measurements
    if plan.private_keys:  # first release which groups exist, then answer over them
        by = list(plan.request.query.group_by)
        keys = _kept_keys(plan.key_release.measurement(data).collect(), by,
                          plan.table.dataset.max_groups)
        measurements = plan.measurements_for(keys)
        return _join(plan, keys, [m(data).collect() for m in measurements])
    frames = [_release_part(plan, meas, part, sps)
              for meas, part, (_shape, sps) in zip(measurements, plan.bounded, plan.parts)]
    return _join(plan, keys, frames)


def _kept_keys(released: pl.DataFrame, by: list[str], most: int) -> pl.DataFrame:
    """The released keys, at most `most` of them (the largest noisy counts): post-processing."""
    count = next(c for c in released.columns if c not in by)
    return released.sort(count, descending=True).head(most).select(by).sort(by)


def _release_part(plan: Plan, meas, part, sps: list[StatPlan]) -> pl.DataFrame:
    """One part: inside OpenDP's polars (the reference), or an engine's exact
    aggregates plus OpenDP's vector noise at the scale the plan accepted."""
    if part is None or plan.table.engine == "polars":
        return meas(plan.table.frame).collect()
    exact = _complete(engines.aggregate(plan.table.engine, plan.table, part), part, plan.keys)
    noisy = {sp.stat.column: noise.release(exact[sp.stat.column].to_list(), sp.param, plan.measure,
                                           stat_sensitivity(part, sp, plan.measure), sp.share)
             for sp in sps}
    return pl.concat([exact.select(part.by), pl.DataFrame(noisy, schema={c: pl.Int64 for c in noisy})],
                     how="horizontal")


def _complete(exact: pl.DataFrame, part, keys: pl.DataFrame | None) -> pl.DataFrame:
    """Every public key (in key order) with its exact aggregates; empty groups are 0."""
    cells = [c.name for c in part.cells]
    if not part.by:
        full = exact if exact.height else pl.DataFrame({c: [None] for c in cells}, schema=exact.schema)
    else:
        full = keys.join(exact, on=list(part.by), how="left", nulls_equal=True, maintain_order="left")
    return full.with_columns(pl.col(cells).fill_null(0))


def _join(plan: Plan, keys: pl.DataFrame | None, frames: list[pl.DataFrame]) -> pl.DataFrame:
    by = list(plan.request.query.group_by)
    if not by:
        return pl.concat(frames, how="horizontal")
    out = keys
    for frame in frames:
        out = out.join(frame, on=by, how="left", nulls_equal=True)
    return out


def answer_rows(plan: Plan, noisy: pl.DataFrame) -> list[dict]:
    """One flat row per public key: keys, then value, ci_low, ci_high per aggregate;
    then the query's derived columns, HAVING, ORDER BY and LIMIT (postprocess.py)."""
    query = plan.request.query
    by = list(query.group_by)
    stats = {sp.stat.column: sp for sp in plan.stats}
    rows = []
    for record in noisy.iter_rows(named=True):
        row = {k: record[k] for k in by}
        for agg in query.aggregates:
            row.update(_aggregate_cells(plan, agg, record, stats))
        rows.append(row)
    return postprocess.finish(rows, query)


def _aggregate_cells(plan: Plan, agg, record: dict, stats: dict[str, StatPlan]) -> dict:
    a = agg.alias
    if agg.kind in RATIOS:
        value, low, high = _ratio(plan, agg, record, stats)
    elif agg.kind == "quantile":
        value, low, high = _num(record[a]), None, None
    elif agg.kind in SPREADS:
        value, low, high = _spread(plan, agg, record, stats)
    else:
        value = _num(record[a]) * stats[a].stat.unit
        acc = stats[a].accuracy
        low, high = value - acc, value + acc
        if _non_negative(plan, agg):  # a count or sum of non-negative values is never below 0
            value, low, high = max(value, 0.0), max(low, 0.0), max(high, 0.0)
    return {a: value, f"{a}_ci_low": low, f"{a}_ci_high": high}


def _spread(plan: Plan, agg, record: dict, stats: dict[str, StatPlan]):
    """VARIANCE/STDDEV from Σ(x − c), Σ(x − c)² and n, each at 1 − α/3 (spread.py)."""
    alpha = (1 - plan.request.confidence) / 3
    parts = [stats[f"{agg.alias}.{role}"] for role in ("num", "sq", "den")]
    values = [_num(record[sp.stat.column]) * sp.stat.unit for sp in parts]
    widths = tuple(spread.half_width(sp, alpha) for sp in parts)
    low, high = _bounds(plan, agg.column)
    return spread.interval(agg.kind, *values, widths, (high - low) / 2)


def _ratio(plan: Plan, agg, record: dict, stats: dict[str, StatPlan]):
    """num/den with a test-inversion interval from both noise laws (intervals.py)."""
    a = agg.alias
    domain = accuracy_plan.ratio_domain(plan.table, agg)
    num_sp, den_sp = stats[f"{a}.num"], stats[f"{a}.den"]
    c = num_sp.stat.center  # the numerator summed values minus c: shift back afterwards
    (value, low, high), = intervals.ratio_intervals(
        [_num(record[f"{a}.num"]) * num_sp.stat.unit], [_num(record[f"{a}.den"])],
        intervals.Noise.of(num_sp), intervals.Noise.of(den_sp),
        (domain[0] - c, domain[1] - c), plan.request.confidence)
    return (None if value is None else value + c), low + c, high + c


def bounding_report(plan: Plan) -> dict | None:
    """Release the share of customers the row bound cuts (when the request asked for it).

    Privacy contract: part of the plan's cost (its measurement is composed into
    plan.cost by OpenDP); call once per release, like `release`.
    """
    if plan.bounding is None:
        return None
    meas, (num_sp, den_sp), part = plan.bounding
    row = _release_part(plan, meas, part, [num_sp, den_sp]).row(0, named=True)
    c = num_sp.stat.center  # a rate's centred numerator (mechanisms._sign_stat)
    (value, low, high), = intervals.ratio_intervals(
        [_num(row[num_sp.stat.column]) * num_sp.stat.unit], [_num(row[den_sp.stat.column])],
        intervals.Noise.of(num_sp), intervals.Noise.of(den_sp), (-c, 1.0 - c),
        plan.request.confidence)
    value, low, high = (None if value is None else value + c), low + c, high + c
    return {"rows_per_customer": plan.table.dataset.rows_per_customer,
            "share_of_customers_truncated": value, "ci_low": low, "ci_high": high,
            "spend": {plan.measure: num_sp.share + den_sp.share},
            "meaning": "customers with more matching purchases than the bound keeps; their "
                       "extra purchases are left out, so counts and sums are biased down"}


def _bounds(plan: Plan, column: str) -> tuple[float, float]:
    col = plan.table.column(column)
    return float(col.lower), float(col.upper)


def _non_negative(plan: Plan, agg) -> bool:
    if agg.kind in ("count", "count_customers"):
        return True
    return agg.kind == "sum" and plan.table.column(agg.column).lower >= 0


def _num(value) -> float:
    return float(value) if value is not None else math.nan
