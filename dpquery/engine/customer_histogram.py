"""The exact histogram of customers by their row counts (stage 1 of `"bounds": "auto"`).

Each customer with at least one row matching the query's WHERE adds to one
bin, that of n_c, the customer's rows in the prepared table (what the row
bound `_row_rank < k` truncates). Bins are about √2 apart up to the largest
bound a query may get: bin i holds edges[i] <= n_c < edges[i+1], the last bin
everyone from edges[-1] up.

What a customer adds is its share of rows the WHERE keeps, m_c / n_c, in
whole `resolution`ths rounded to nearest: round(Q · m_c / n_c) with Q = 8
for a filtered query, and exactly 1 (Q = 1, m_c = n_c) without a WHERE, so an
unfiltered histogram counts customers. A bin then estimates, in customers,
how many matching rows the bound cuts: customer c loses m_c (1 − k/n_c) =
(m_c/n_c)(n_c − k) of them when n_c > k (rank before WHERE keeps a uniform
k/n_c of each customer's rows). One value per bin keeps the released vector
short (noise in every empty bin is what makes the estimate rough), and the
noise per customer is the same whatever Q (the scale grows with Q).

The rounding is integer comparisons (2Q·m >= (2j − 1)·n), the bins too
(n >= edge), so every engine computes the same values: tests/test_autobound.py
checks polars, DuckDB and Spark agree exactly.

Stability argument (neighbouring datasets differ in all rows of one
customer): what a customer adds depends only on that customer's own rows, it
adds to one bin only and at most Q, so adding or removing one customer
changes one bin by at most Q: L1 and L2 sensitivity Q (`sensitivity`). The
histogram reads only the prepared table (consented, non-excluded rows), like
every query.
"""
from __future__ import annotations

import importlib
from functools import reduce

import polars as pl
from sqlglot import exp

from dpquery.engine import frames
from dpquery.engine.engines import MODULES
from dpquery.engine.engines.sqlplan import col, predicate

FILTERED_RESOLUTION = 8  # Q for a query with a WHERE: shares in eighths
SCHEMA = {"n_bin": pl.Int64, "weight": pl.Int64}


def resolution(filtered: bool) -> int:
    """Q: the most one customer adds to its bin (the histogram's L1 and L2 sensitivity)."""
    return FILTERED_RESOLUTION if filtered else 1


def edges(maximum: int) -> tuple[int, ...]:
    """Bin edges about √2 apart from 1 up to `maximum`, the last one; the last bin holds
    every customer with at least `maximum` rows (any bound up to it cuts them alike)."""
    out, i = {maximum}, 0
    while round(2 ** (i / 2)) < maximum:
        out.add(round(2 ** (i / 2)))
        i += 1
    return tuple(sorted(out))


def exact(table, where, bin_edges: tuple[int, ...]) -> list[int]:
    """Each bin's total (in bin order), computed by the table's engine."""
    frame = _by_engine(table, where, bin_edges)
    totals = dict(frame.iter_rows())
    return [totals.get(i, 0) for i in range(len(bin_edges))]


def _by_engine(table, where, bin_edges) -> pl.DataFrame:
    if table.engine == "polars":
        return on_polars(table, where, bin_edges)
    module = importlib.import_module(MODULES[table.engine])
    return module.run_select(table, lambda source: compile_histogram(
        source, table.dataset.privacy_unit, where, bin_edges), SCHEMA)


def on_polars(table, where, bin_edges) -> pl.DataFrame:
    """The reference: plain polars over the prepared table, an exact aggregate."""
    unit, q = table.dataset.privacy_unit, resolution(where is not None)
    matched = frames.predicate_expr(where).cast(pl.Int64).sum() if where is not None else pl.len()
    per = table.frame.group_by(unit).agg(pl.len().cast(pl.Int64).alias("n"),
                                         matched.cast(pl.Int64).alias("m"))
    n, m = pl.col("n"), pl.col("m")
    n_bin = pl.sum_horizontal([(n >= e).cast(pl.Int64) for e in bin_edges[1:]] or [pl.lit(0)])
    share = pl.sum_horizontal([(2 * q * m >= (2 * j - 1) * n).cast(pl.Int64)
                               for j in range(1, q + 1)])
    out = (per.filter(m >= 1).select(n_bin.alias("n_bin"), share.alias("weight"))
           .group_by("n_bin").agg(pl.col("weight").sum().cast(pl.Int64)))
    return out.collect(engine="streaming").cast(SCHEMA)


def compile_histogram(source: exp.Expression, unit: str, where, bin_edges) -> exp.Select:
    """The same histogram as one SQL tree (DuckDB, Spark):

        SELECT n_bin, SUM(q) FROM (
          SELECT [n >= e1] + [n >= e2] + ... AS n_bin,
                 [2Q·m >= 1·n] + [2Q·m >= 3·n] + ... AS q
          FROM (SELECT unit, COUNT(*) AS n, SUM([where]) AS m FROM t GROUP BY unit) c
          WHERE m >= 1) b
        GROUP BY n_bin
    """
    q = resolution(where is not None)
    matched = exp.Sum(this=_indicator(predicate(where))) if where is not None \
        else exp.Count(this=exp.Star())
    per = (exp.select(col(unit), exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True),
                      exp.alias_(matched, "m", quoted=True))
           .from_(source).group_by(col(unit)))
    n, m = col("n"), col("m")
    n_bin = _sum([_indicator(exp.GTE(this=n, expression=_int(e))) for e in bin_edges[1:]])
    share = _sum([_indicator(exp.GTE(this=_times(2 * q, m), expression=_times(2 * j - 1, n)))
                  for j in range(1, q + 1)])
    binned = (exp.select(exp.alias_(n_bin, "n_bin", quoted=True),
                         exp.alias_(share, "q", quoted=True))
              .from_(exp.Subquery(this=per, alias="c"))
              .where(exp.GTE(this=m, expression=_int(1))))
    total = exp.Cast(this=exp.Sum(this=col("q")), to=exp.DataType.build("BIGINT"))
    return (exp.select(col("n_bin"), exp.alias_(total, "weight", quoted=True))
            .from_(exp.Subquery(this=binned, alias="b")).group_by(col("n_bin")))


def _indicator(condition: exp.Expression) -> exp.Expression:
    return exp.Case(ifs=[exp.If(this=condition, true=_int(1))], default=_int(0))


def _sum(terms: list[exp.Expression]) -> exp.Expression:
    if not terms:
        return _int(0)
    return exp.Paren(this=reduce(lambda a, b: exp.Add(this=a, expression=b), terms))


def _times(factor: int, value: exp.Expression) -> exp.Expression:
    return exp.Mul(this=_int(factor), expression=value)


def _int(value: int) -> exp.Expression:
    return exp.Literal.number(int(value))
