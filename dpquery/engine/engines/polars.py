"""The reference bounded aggregation: OpenDP's own polars plan, run without noise.

The same frames.py builders the OpenDP measurement is made of (keyed row
truncation, dense-rank group truncation, per-customer rows), with plain
aggregates in place of the noisy ones. Runs on polars' streaming engine.
"""
from __future__ import annotations

import polars as pl

from dpquery.engine import frames
from dpquery.engine.bounded import Cell, Part


def aggregate(table, part: Part) -> pl.DataFrame:
    by = list(part.by)
    frame = table.frame
    if part.shape == "rows":
        frame = frames.where(frames.truncate_rows(frame, part.unit, part.rows_per_customer),
                             part.where)
        exprs = [_row_expr(c) for c in part.cells]
    else:
        frame = frames.where(frame, part.where)
        if part.groups is not None and by:
            frame = frames.truncate_groups(frame, part.unit, by, part.groups)
        pre = [e for e in map(_pre_expr, part.cells) if e is not None]
        frame = frame.group_by([part.unit, *by]).agg(pre or [pl.len().alias("_rows")])
        exprs = [_customer_expr(c) for c in part.cells]
    out = frame.group_by(by).agg(exprs) if by else frame.select(exprs)
    return out.collect(engine="streaming")


def _clamped(cell: Cell) -> pl.Expr:
    return pl.col(cell.column).clip(cell.bounds[0], cell.bounds[1])


def _row_expr(cell: Cell) -> pl.Expr:
    if cell.kind == "len":
        return pl.len().alias(cell.name)
    value = _clamped(cell) - cell.center
    if cell.kind == "sq":  # in 64 bits (an Int32 column's square would wrap)
        value = value.cast(pl.Int64)
        value = value * value
    return value.sum().alias(cell.name)


def _pre_expr(cell: Cell) -> pl.Expr | None:
    """A per-(customer, group) value: the flag or the customer's clamped total."""
    if cell.kind == "flag":
        return frames.matched_flag(cell.condition, cell.name)
    if cell.kind == "sign":
        return frames.matched_sign(cell.condition, cell.name)
    if cell.kind == "total":
        return _clamped(cell).sum().alias(cell.name)
    return None


def _customer_expr(cell: Cell) -> pl.Expr:
    if cell.kind == "len":
        return pl.len().alias(cell.name)
    if cell.kind in ("flag", "sign"):
        return pl.col(cell.name).sum()
    return pl.col(cell.name).clip(*cell.total_bounds).sum()
