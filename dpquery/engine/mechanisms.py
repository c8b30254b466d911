"""The noisy statistics each aggregate is computed from, as OpenDP expressions.

A `Stat` is one noisy column; `expr(scale)` builds its OpenDP polars
expression. plan.py sizes the scales and composes them; this module only says
what is released for COUNT, COUNT DISTINCT, SUM, AVG, quantiles and
PURCHASE_RATE, and over which frame shape (see frames.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import opendp.prelude as dp
import polars as pl

from dpquery.engine import catalog, frames
from dpquery.engine.bounded import Cell
from dpquery.engine.catalog import Table
from dpquery.engine.prepare import ROW_RANK
from dpquery.engine.query import Compare
from dpquery.engine.query import SPREADS, Aggregate

dp.enable_features("contrib")


@dataclass(frozen=True)
class Stat:
    """One noisy column: `expr(scale)` builds its OpenDP expression."""

    column: str
    aggregate: str
    role: str  # value | num | den (| sq: a spread's sum of squares)
    shape: str  # rows | group_rows | customers
    expr: Callable[[float | None], pl.Expr]
    pre: Callable[[], pl.Expr] | None = None  # per-customer column it reads (customers shape)
    unit: float = 1.0  # the released value times `unit` is in the column's own units
    center: float = 0.0  # a ratio's numerator sums values minus this (column units)
    cell: Cell | None = None  # the exact aggregate engines compute (None: OpenDP's polars only)


def stats_for(agg: Aggregate, table: Table, groups: int) -> list[Stat]:
    """The noisy statistics an aggregate is computed from."""
    ds, a = table.dataset, agg.alias
    if agg.kind == "count":
        return [_len_stat(a, a, "value", "rows")]
    if agg.kind == "count_customers":
        return [_len_stat(a, a, "value", "customers")]
    if agg.kind == "purchase_rate":
        num, den = f"{a}.num", f"{a}.den"
        return [_sign_stat(num, a, agg.condition), _len_stat(den, a, "den", "customers")]
    col = ds.columns[agg.column]
    if agg.kind == "quantile":
        cands = [float(c) for c in (col.quantile_candidates or _default_candidates(col))]
        return [Stat(a, a, "value", "group_rows",
                     lambda s: pl.col(agg.column).dp.quantile(agg.quantile, cands, scale=s).alias(a))]
    source, bounds, unit = summable(col)
    if agg.kind == "sum":
        return [_sum_stat(agg, col, source, bounds, unit, table, groups)]
    if agg.kind in SPREADS:
        return _spread_stats(a, source, bounds, unit, ds.max_rows)
    return _avg_stats(a, source, bounds, unit)


def _len_stat(name: str, agg: str, role: str, shape: str) -> Stat:
    return Stat(name, agg, role, shape, lambda s: dp.len(scale=s, signed=True).alias(name),
                cell=Cell(name, "len"))


def _sign_stat(name: str, agg: str, condition) -> Stat:
    """A rate's numerator, centred: Σ over customers of (matched − 1/2), released as the
    sum of ±1 (+1 with a matching row) in units of 1/2.

    Rate = 1/2 + Σ(matched − 1/2) / customers. Each customer adds ±1/2 instead of 0
    or 1, so the same spend gives half the noise on the numerator (in rate units),
    and the ratio's error from the denominator's noise scales with |rate − 1/2|
    instead of the rate: at most half as large. As AVG's centre (_avg_stats).
    """
    return Stat(name, agg, "num", "customers", lambda s: pl.col(name).dp.sum((-1, 1), scale=s),
                pre=lambda: frames.matched_sign(condition, name), unit=0.5, center=0.5,
                cell=Cell(name, "sign", condition=condition))


def _avg_stats(a: str, source: str, bounds, unit: float) -> list[Stat]:
    """AVG = center + Σ(value − center) / count, the center at the clamp range's midpoint.

    Centering halves the numerator's sensitivity (its values lie within half
    the range of zero), so the same spend gives half the noise on the sum.
    """
    num, den = f"{a}.num", f"{a}.den"
    mid = (bounds[0] + bounds[1]) // 2 if isinstance(bounds[0], int) else (bounds[0] + bounds[1]) / 2
    centred = (bounds[0] - mid, bounds[1] - mid)
    cell = Cell(num, "sum", source, bounds, mid) if isinstance(mid, int) else None
    return [Stat(num, a, "num", "rows",
                 lambda s: (pl.col(source) - mid).dp.sum(centred, scale=s).alias(num),
                 unit=unit, center=mid * unit, cell=cell),
            _len_stat(den, a, "den", "rows")]


def _spread_stats(a: str, source: str, bounds, unit: float, max_rows: int) -> list[Stat]:
    """VARIANCE and STDDEV from Σ(x − c), Σ(x − c)² and a count (c: the clamp midpoint).

    The square is clamped to [0, m²], m the largest |x − c| of a clamped value,
    so one row changes it by at most m²: OpenDP sizes its noise from those
    bounds. With integer units whose squares cannot overflow a 64-bit sum
    (`square_fits`), engines compute all three as exact cells (`sum`, `sq`,
    `len`); otherwise they run on OpenDP's polars (a float column without a
    `resolution`, like SUM of one).
    """
    num, sq = f"{a}.num", f"{a}.sq"
    mid = (bounds[0] + bounds[1]) // 2 if isinstance(bounds[0], int) else (bounds[0] + bounds[1]) / 2
    reach = max(mid - bounds[0], bounds[1] - mid)
    centred = (bounds[0] - mid, bounds[1] - mid)
    engine = isinstance(mid, int) and square_fits(bounds, max_rows)

    def square(s):
        x = pl.col(source).clip(bounds[0], bounds[1]) - mid
        return (x * x).dp.sum((0 * reach, reach * reach), scale=s).alias(sq)
    return [Stat(num, a, "num", "rows",
                 lambda s: (pl.col(source) - mid).dp.sum(centred, scale=s).alias(num),
                 unit=unit, center=mid * unit,
                 cell=Cell(num, "sum", source, bounds, mid) if engine else None),
            Stat(sq, a, "sq", "rows", square, unit=unit * unit,
                 cell=Cell(sq, "sq", source, bounds, mid) if engine else None),
            _len_stat(f"{a}.den", a, "den", "rows")]


SUM_LIMIT = 2 ** 62  # half of BIGINT's range: headroom for the noise OpenDP adds to a cell


def square_fits(bounds: tuple[int, int], max_rows: int) -> bool:
    """Whether every group's Σ(x − c)² (c the midpoint) fits a 64-bit integer with room.

    A group has at most `max_rows` rows (the prepared table is checked against
    it) and each adds at most m² (m the larger distance from c to a bound), so
    max_rows · m² bounds every partial and final sum, and the sensitivity
    rows_per_customer · m² (rows_per_customer <= max_rows) as well.
    """
    mid = (bounds[0] + bounds[1]) // 2
    reach = max(mid - bounds[0], bounds[1] - mid)
    return max_rows * reach * reach <= SUM_LIMIT


def spread_note(agg: Aggregate, table: Table) -> str | None:
    """Why a VARIANCE or STDDEV runs on OpenDP's polars path on an engine table (config only)."""
    if agg.kind not in SPREADS or table.engine == "polars":
        return None
    col = table.dataset.columns[agg.column]
    if not col.resolution:
        why = "its values have no `resolution`"
    elif not square_fits(summable(col)[1], table.dataset.max_rows):
        why = "its squared values in units of its `resolution` could overflow a 64-bit sum over max_rows rows"
    else:
        return None
    if any(d.name == agg.column for d in table.derived):
        fix = ("a row-level expression has one when it is a whole number or selects one column "
               "that has one (CASE WHEN ... THEN amount ELSE 0 END)")
    else:
        fix = f"declare a `resolution` (or tighter bounds) for {agg.column} in config.toml"
    return f"{agg.alias} runs on the OpenDP polars path, not the {table.engine} engine: {why}; {fix}."


def summable(col):
    """The column sums read, its clamp bounds there, and the value of one unit.

    With a `resolution`, sums run over the hidden integer column (e.g. cents):
    integer sums are exact, so OpenDP adds no float-rounding margin to the noise.
    """
    if col.resolution:
        res = col.resolution
        return (catalog.units_column(col.name),
                (math.floor(col.lower / res), math.ceil(col.upper / res)), res)
    return col.name, (float(col.lower), float(col.upper)), 1.0


def _sum_stat(agg: Aggregate, col, source: str, bounds, unit: float, table: Table,
              groups: int) -> Stat:
    """SUM over bounded rows, or over clamped customer totals where that is less noisy."""
    a = agg.alias
    integer = isinstance(bounds[0], int)
    rows = Stat(a, a, "value", "rows", lambda s: pl.col(source).dp.sum(bounds, scale=s).alias(a),
                unit=unit, cell=Cell(a, "sum", source, bounds) if integer else None)
    if col.customer_total_upper is None or col.lower < 0:
        return rows
    top = col.customer_total_upper / unit
    total = (0, math.ceil(top)) if col.resolution else (0.0, float(top))
    totals = Stat(a, a, "value", "customers", lambda s: pl.col(a).dp.sum(total, scale=s).alias(a),
                  pre=lambda: frames.customer_total(source, bounds[0], bounds[1], a), unit=unit,
                  cell=Cell(a, "total", source, bounds, total_bounds=total) if integer else None)
    return totals if groups * total[1] < table.dataset.rows_per_customer * bounds[1] else rows


def _default_candidates(col) -> list[float]:
    step = (col.upper - col.lower) / 20
    return [col.lower + i * step for i in range(21)]


def keys_stat(shape: str) -> Stat:
    """A hidden count that OpenDP thresholds to release keys without a public domain."""
    name = f"_keys.{shape}"  # released by OpenDP's thresholding: the reference engine only
    return Stat(name, name, "keys", shape, lambda s: dp.len(scale=s, signed=True).alias(name))


def truncation_stats(rows_per_customer: int) -> list[Stat]:
    """The share of the query's customers some of whose matching rows the bound drops.

    A matching row is dropped when its keyed rank is at or above the bound
    (prepare.py): (customers with such a row, centred as a rate's, customers).
    """
    num, den = "_truncated.num", "_truncated.den"
    cut = Compare(ROW_RANK, ">=", rows_per_customer)
    return [_sign_stat(num, "_truncated", cut), _len_stat(den, "_truncated", "den", "customers")]
