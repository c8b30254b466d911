"""Polars plans for each aggregate shape, contribution-bounded by configuration.

Pure polars, no noise: these builders describe *what* is aggregated. plan.py
hands them to OpenDP (which adds noise and proves the bound); the benchmark
runs the same builders without noise as its baseline. Bounds come from
config.toml, never from the data.

Shapes:
- rows: each customer's rows truncated to `rows_per_customer` (COUNT, SUM, AVG);
- group_rows: rows truncated per (customer, group) and to `groups_per_customer`
  groups (quantiles, whose mechanism runs once per group);
- customers: one row per (customer, group), at most `groups_per_customer` groups
  per customer (COUNT DISTINCT, PURCHASE_RATE, SUM of customer totals).
"""
from __future__ import annotations

import operator

import polars as pl

from dpquery.engine.prepare import ROW_RANK
from dpquery.engine.query import And, Compare, InList, Not, Or

_OPS = {"=": "__eq__", "<>": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}


def predicate_expr(pred) -> pl.Expr:
    """The query model's condition as a polars expression (no string building)."""
    if isinstance(pred, (And, Or)):  # chained & and |: OpenDP refuses all_/any_horizontal
        combine = operator.and_ if isinstance(pred, And) else operator.or_
        return _balanced(combine, [predicate_expr(p) for p in pred.items])
    if isinstance(pred, Not):
        return ~predicate_expr(pred.item)
    col = pl.col(pred.column)
    if isinstance(pred, Compare):
        return getattr(col, _OPS[pred.op])(pl.lit(pred.value))
    # OpenDP 0.16 refuses is_in and is_between: spell them with comparisons
    if isinstance(pred, InList):
        expr = _balanced(operator.or_, [col == pl.lit(v) for v in pred.values])
    else:
        expr = (col >= pl.lit(pred.low)) & (col <= pl.lit(pred.high))
    return ~expr if pred.negated else expr


def _balanced(combine, exprs: list[pl.Expr]) -> pl.Expr:
    """Combine pairwise, level by level: n terms nest ceil(log2 n) deep, not n.

    OpenDP and polars walk expressions recursively; a left-deep chain of a
    thousand `|` overflows the native stack and kills the process.
    """
    while len(exprs) > 1:
        paired = [combine(a, b) for a, b in zip(exprs[::2], exprs[1::2])]
        exprs = paired + exprs[len(paired) * 2:]
    return exprs[0]


def base(schema: dict) -> pl.LazyFrame:
    """An empty frame of the prepared table's schema (OpenDP plans are built on it)."""
    return pl.LazyFrame(schema=schema)


def where(frame: pl.LazyFrame, pred) -> pl.LazyFrame:
    """The query's WHERE filter (none: the frame as it is)."""
    return frame.filter(predicate_expr(pred)) if pred is not None else frame


def truncate_rows(frame: pl.LazyFrame, unit: str, k: int) -> pl.LazyFrame:
    """Keep each customer's rows whose keyed rank is below k (see prepare.py).

    `_row_rank` numbers a customer's rows 0 .. n-1, so ranking it again gives
    itself: `int_range(len).sort_by(int_range(len).sort_by(_row_rank))` is
    `_row_rank` spelled as a per-customer enumeration, which OpenDP recognises
    as truncation to k rows per customer and accounts as such. Engines filter
    `_row_rank < k` directly and keep the identical rows.
    """
    order = pl.int_range(pl.len()).sort_by(pl.col(ROW_RANK))
    return frame.filter(pl.int_range(pl.len()).sort_by(order).over(unit) < k)


def truncate_groups(frame: pl.LazyFrame, unit: str, by: list[str], k: int) -> pl.LazyFrame:
    """Keep each customer's rows in at most k of the groups `by` defines: the
    first k in key order (every engine keeps the same ones, bounded.py).

    Runs on the data handed to an OpenDP measurement, outside its plan
    (reference.py states the stability argument and the bound OpenDP is told):
    OpenDP 0.16 would account this rank filter inside its plan as k + 1
    groups. Skipped when there are no groups.
    """
    if not by:
        return frame
    key = pl.col(by[0]) if len(by) == 1 else pl.struct(*by)
    return frame.filter(key.rank("dense").over(unit) <= k)


def truncate_rows_per_group(frame: pl.LazyFrame, unit: str, by: list[str], k: int) -> pl.LazyFrame:
    return frame.filter(pl.int_range(pl.len()).shuffle().over(unit, *by) < k)


def per_customer(frame: pl.LazyFrame, unit: str, by: list[str], aggs: list[pl.Expr]) -> pl.LazyFrame:
    """One row per (customer, group) carrying per-customer values."""
    return frame.group_by([unit, *by]).agg(aggs)


def matched_flag(condition, name: str) -> pl.Expr:
    """1 if the customer has any row matching `condition` in the group, else 0."""
    return predicate_expr(condition).any().cast(pl.Int64, strict=False).fill_null(0).alias(name)


def matched_sign(condition, name: str) -> pl.Expr:
    """+1 if the customer has any row matching `condition` in the group, else −1."""
    return pl.when(predicate_expr(condition).any().fill_null(False)) \
        .then(pl.lit(1, dtype=pl.Int64)).otherwise(pl.lit(-1, dtype=pl.Int64)).alias(name)


def customer_total(column: str, lower: float, upper: float, name: str) -> pl.Expr:
    """A customer's total within a group, each row first clamped to [lower, upper]."""
    return pl.col(column).clip(lower, upper).sum().alias(name)


def aggregate(frame: pl.LazyFrame, by: list[str], exprs: list[pl.Expr], keys: pl.LazyFrame | None):
    """Group and aggregate; with public keys, every key appears (left join from keys).

    Without public keys (private key selection) only the groups OpenDP's
    threshold lets through appear.
    """
    if not by:
        return frame.select(exprs)
    grouped = frame.group_by(by).agg(exprs)
    if keys is None:
        return grouped
    return keys.join(grouped, on=by, how="left", nulls_equal=True)


def key_frame(columns: dict, by: list[str], dtypes: dict) -> pl.LazyFrame | None:
    """Every combination of the public domains of `by`, in configured order."""
    if not by:
        return None
    frame = None
    for name in by:
        values = pl.LazyFrame({name: pl.Series(name, list(columns[name].values), dtype=dtypes[name])})
        frame = values if frame is None else frame.join(values, how="cross")
    return frame
