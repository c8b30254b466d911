"""AVG per group from a released SUM and COUNT(*) the partner holds (see derive.py).

AVG(x) is SUM(x) / COUNT(*) over the same rows. When the partner holds a
released SUM(x) and a released COUNT(*) with the same grouping and the same
WHERE (in one answer or in two), each group's average is the ratio of the two
released cells. Its interval is the test-inversion interval of
intervals.ratio_intervals over the two released noise laws: the two noises
are independent draws (separate statistics, separate measurements), which is
all that construction needs, and the true ratio lies in the clamp range of x.

Privacy: as derive.py, post-processing of the partner's own answers and of
public configuration. Which answers are used, and whether the result is
accurate enough, depends on the queries and on the released noise laws only.

The released values are clipped at 0 (counts, sums of non-negative values):
a clipped cell's draw is read back from its interval (derive_values.released); a
cell whose whole interval was clipped is not known well enough for a ratio,
so that group gets the whole clamp range and no value.

The ratio estimates the held queries' contribution-bounded values: the held
SUM may have clamped each customer's total (mechanisms._sum_stat) where a
fresh AVG bounds rows, so the two may differ slightly; both lie in the clamp
range.
"""
from __future__ import annotations

import math

from dpquery import derive_values as V
from dpquery.engine import intervals, postprocess


def average(want: dict, held: list, plan, describe) -> dict | None:
    """A derived answer of a query of AVGs from held SUMs and COUNT(*)s, or None."""
    aggs = want["aggregates"]
    if not aggs or any(a["kind"] != "avg" for a in aggs):
        return None
    found = {}
    for agg in aggs:
        sources = [_source(want, held, _is_sum(agg["column"])),
                   _source(want, held, _is_count(agg["column"]))]
        if None in sources:
            return None
        found[agg["alias"]] = sources
    return _answer(want, found, plan, describe)


def _is_sum(column: str):
    return lambda a: a["kind"] == "sum" and a["column"] == column


def _is_count(column: str):
    return lambda a: a["kind"] == "count" and a.get("column") in (None, column)


def _source(want: dict, held: list, wanted) -> tuple | None:
    """(held answer, its aggregate's alias): same grouping and WHERE, no post-processing."""
    for h in held:
        have = h.request["query"]
        if not V.plain(have) or have["dataset"] != want["dataset"] or \
                set(have["group_by"]) != set(want["group_by"]) or have["where"] != want["where"]:
            continue
        alias = next((a["alias"] for a in have["aggregates"] if wanted(a)), None)
        if alias is not None and h.answer is not None and \
                _held_width(h.answer, alias) is not None:
            return h, alias
    return None


def _answer(want: dict, found: dict, plan, describe) -> dict | None:
    by = list(want["group_by"])
    out = None
    noise, ids = {}, []
    for alias, ((sum_h, s), (count_h, c)) in found.items():
        num_entry, den_entry = _entry(sum_h.answer, s), _entry(count_h.answer, c)
        unit = next(sp for sp in plan.stats if sp.stat.column == f"{alias}.num").stat.unit
        num, den = V.law(num_entry, unit), V.law(den_entry, 1.0)
        width = V.ratio_width(num, den, plan, alias, centre=0.0)
        if not V.limit_for(plan, alias)(width):
            return None
        cells = _cells(plan, alias, by, (sum_h.answer, s), (count_h.answer, c), num, den)
        if out is None:
            out = [{col: key[i] for i, col in enumerate(by)} for key in cells]
        for row, values in zip(out, cells.values()):
            row.update(values)
        noise[alias] = ([{**num_entry, "statistic": "num"}, {**den_entry, "statistic": "den"}],
                        width)
        ids += [sum_h.id, count_h.id]
    ids = sorted(set(ids))
    note = (f"Derived at no cost from quer{'ies' if len(ids) > 1 else 'y'} "
            f"{', '.join(map(str, ids))}, which this partner already holds: each average is a "
            "released SUM over the released COUNT(*) of its group, and its interval is the "
            "ratio interval of the two released noises")
    rows = postprocess.finish(out, plan.request.query)
    return V.answer_of(rows, ids, note, noise, plan, describe)


def _entry(answer: dict, alias: str) -> dict:
    info = next(a for a in answer["aggregates"] if a["alias"] == alias)
    return info["noise"][0]


def _cells(plan, alias: str, by: list, sums: tuple, counts: tuple, num, den) -> dict:
    """{group key: the AVG's value and interval} in the SUM answer's row order."""
    (sum_answer, s), (count_answer, c) = sums, counts
    col = plan.table.column(next(a.column for a in plan.request.query.aggregates
                                 if a.alias == alias))
    count_rows = {tuple(r[k] for k in by): r for r in count_answer["rows"]}
    keys, nums, dens = [], [], []
    for row in sum_answer["rows"]:
        key = tuple(row[k] for k in by)
        n = V.released(row, s, _held_width(sum_answer, s), col.lower >= 0)
        d = V.released(count_rows[key], c, _held_width(count_answer, c), True)
        keys.append(key)
        nums.append(math.nan if n is None else n)
        dens.append(math.nan if d is None else d)
    got = intervals.ratio_intervals(nums, dens, num, den, (float(col.lower), float(col.upper)),
                                    plan.request.confidence)
    return {key: {alias: v, f"{alias}_ci_low": lo, f"{alias}_ci_high": hi}
            for key, (v, lo, hi) in zip(keys, got)}


def _held_width(answer: dict, alias: str) -> float | None:
    return next(a for a in answer["aggregates"] if a["alias"] == alias).get("expected_halfwidth")
