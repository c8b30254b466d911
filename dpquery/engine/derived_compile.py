"""Derived columns written for each engine: polars expressions and sqlglot trees.

Both spellings compute the same value on every row, so the bounded
aggregates of every engine stay identical (tests/test_derived_engines.py):

- a numeric column computed with enters clamped to its configured bounds
  (derived_bounds.column_bounds), a float NaN taken as the lower bound: the
  proven bounds hold for every row, no division meets 0, no cast overflows,
  whatever the data (so no data value can make a query fail);
- literals and results carry explicit types (BIGINT, DOUBLE, text); `/`
  divides doubles; FLOOR, CEIL and ROUND(x) give whole numbers, ROUND rounding
  halves away from zero as DuckDB and Spark do;
- SQL inlines a derived column that another one reads (no alias references);
- a date part reads the day clamped to the column's configured days (the
  reference's frame holds dates as ISO text, catalog.open_table; SQL engines
  the prepared DATE); DOW is ISO (1 = Monday .. 7 = Sunday) everywhere,
  computed in SQL from the days since a Monday, since each dialect numbers
  DAYOFWEEK its own way (DuckDB 0 = Sunday, Spark 1 = Sunday).

Polars materialises them with `with_columns` on the table's LazyFrame, one
stage per column in definition order; SQL engines read
`SELECT *, <expr> AS name, ... FROM <prepared parts>` in place of the parts.
derived_table.py decides which columns (values, and integer units for sums).
"""
from __future__ import annotations

import polars as pl
from sqlglot import exp

from dpquery.engine import frames
from dpquery.engine.derived import Arith, Case, Col, DatePart, Func, Lit, Truth
from dpquery.engine.derived_bounds import column_bounds
from dpquery.engine.engines import sqlplan

DTYPES = {"string": pl.String, "int": pl.Int64, "float": pl.Float64}
SQL_TYPES = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE"}


# -- polars -------------------------------------------------------------------------

def polars_frame(frame: pl.LazyFrame, derived: tuple, columns: dict, types: dict) -> pl.LazyFrame:
    """`frame` with every derived column appended, one stage each, in order (a column may
    read the ones before it)."""
    for d in derived:
        frame = frame.with_columns(to_polars(d.expr, columns).cast(DTYPES[types[d.name]])
                                   .alias(d.name))
    return frame


def to_polars(expr, columns: dict) -> pl.Expr:
    """One expression as polars; `columns` holds the configured columns (not derived ones)."""
    if isinstance(expr, Col):
        return _clamped_polars(expr.name, columns.get(expr.name))
    if isinstance(expr, Lit):
        return _lit_polars(expr.value)
    if isinstance(expr, Arith):
        left, right = to_polars(expr.left, columns), to_polars(expr.right, columns)
        if expr.op == "/":
            return left.cast(pl.Float64) / right.cast(pl.Float64)
        return {"+": left.__add__, "-": left.__sub__, "*": left.__mul__}[expr.op](right)
    if isinstance(expr, Func):
        return _func_polars(expr, [to_polars(a, columns) for a in expr.args])
    if isinstance(expr, DatePart):
        return _date_part_polars(expr, columns)
    if isinstance(expr, Truth):
        return pl.when(frames.predicate_expr(expr.condition)).then(pl.lit(1, pl.Int64)) \
            .otherwise(pl.lit(0, pl.Int64))
    if not isinstance(expr, Case):
        raise TypeError(f"not a derived expression: {type(expr).__name__}")
    chain = pl
    for cond, value in expr.whens:
        chain = chain.when(frames.predicate_expr(cond)).then(to_polars(value, columns))
    return chain.otherwise(to_polars(expr.default, columns))


_POLARS_PARTS = {"YEAR": "year", "QUARTER": "quarter", "MONTH": "month", "DAY": "day",
                 "DOW": "weekday"}  # polars' weekday is ISO: 1 = Monday


def _date_part_polars(node: DatePart, columns: dict) -> pl.Expr:
    first, last = columns[node.arg.name].dates
    day = pl.col(node.arg.name).str.to_date("%Y-%m-%d").clip(pl.lit(first), pl.lit(last))
    return getattr(day.dt, _POLARS_PARTS[node.part])().cast(pl.Int64)


def _lit_polars(value) -> pl.Expr:
    dtype = pl.String if isinstance(value, str) else pl.Int64 if isinstance(value, int) else pl.Float64
    return pl.lit(value, dtype=dtype)


def _clamped_polars(name: str, col) -> pl.Expr:
    """A configured numeric column within its bounds (NaN: the lower bound); others as stored."""
    bounds = column_bounds(col) if col is not None and col.is_numeric else None
    if bounds is None:
        return pl.col(name)
    return _clip_polars(pl.col(name), bounds, col.type == "float")


def _clip_polars(value: pl.Expr, bounds, floating: bool) -> pl.Expr:
    lo, hi = bounds
    clipped = value.clip(pl.lit(lo), pl.lit(hi))
    return pl.when(value.is_nan()).then(pl.lit(lo, pl.Float64)).otherwise(clipped) \
        if floating else clipped


def _func_polars(node: Func, args: list[pl.Expr]) -> pl.Expr:
    name = node.name
    if name == "LEAST":
        return pl.min_horizontal(args)
    if name == "GREATEST":
        return pl.max_horizontal(args)
    if name == "COALESCE":
        return pl.coalesce(args)
    if name == "ABS":
        return args[0].abs()
    if name == "CLAMP":
        lo, hi = node.args[1].value, node.args[2].value
        return _clip_polars(args[0].cast(pl.Float64), (float(lo), float(hi)), True)
    x = args[0].cast(pl.Float64)
    decimals = node.args[1].value if len(node.args) == 2 else 0
    if name == "ROUND":
        rounded = x.round(decimals, mode="half_away_from_zero")
        return rounded if decimals else rounded.cast(pl.Int64)
    return (x.floor() if name == "FLOOR" else x.ceil()).cast(pl.Int64)


# -- SQL ----------------------------------------------------------------------------

def table_source(table, source: exp.Expression) -> exp.Expression:
    """A SQL engine's source for `table`: the prepared parts plus the query's derived columns.

    `table.dataset.columns` holds the derived columns too (derived_table.py); a
    derived expression reads configured columns, whose clamp bounds come from there."""
    return sql_source(source, table.derived, table.dataset.columns, table.derived_types)


def sql_source(source: exp.Expression, derived: tuple, columns: dict, types: dict) -> exp.Expression:
    """`source` with the derived columns appended: SELECT *, expr AS name, ... FROM source."""
    if not derived:
        return source
    inlined: dict[str, exp.Expression] = {}
    for d in derived:
        value = _inline(to_sql(d.expr, columns), inlined)
        inlined[d.name] = exp.Cast(this=value, to=exp.DataType.build(SQL_TYPES[types[d.name]]))
    items = [exp.alias_(inlined[d.name].copy(), d.name, quoted=True) for d in derived]
    select = exp.select(exp.Star(), *items).from_(source)
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier("derived_rows")))


def _inline(tree: exp.Expression, inlined: dict) -> exp.Expression:
    """Columns naming an earlier derived column replaced by its expression."""
    return tree.transform(lambda n: inlined[n.name].copy()
                          if isinstance(n, exp.Column) and n.name in inlined else n)


def to_sql(expr, columns: dict) -> exp.Expression:
    if isinstance(expr, Col):
        return _clamped_sql(expr.name, columns.get(expr.name))
    if isinstance(expr, Lit):
        return _lit_sql(expr.value)
    if isinstance(expr, Arith):
        left, right = to_sql(expr.left, columns), to_sql(expr.right, columns)
        if expr.op == "/":
            return exp.Paren(this=exp.Div(this=_double(left), expression=_double(right)))
        node = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul}[expr.op]
        return exp.Paren(this=node(this=left, expression=right))
    if isinstance(expr, Func):
        return _func_sql(expr, [to_sql(a, columns) for a in expr.args])
    if isinstance(expr, DatePart):
        return _date_part_sql(expr, columns)
    if isinstance(expr, Truth):
        return exp.Case(ifs=[exp.If(this=sqlplan.predicate(expr.condition), true=_lit_sql(1))],
                        default=_lit_sql(0))
    if not isinstance(expr, Case):
        raise TypeError(f"not a derived expression: {type(expr).__name__}")
    ifs = [exp.If(this=sqlplan.predicate(c), true=to_sql(v, columns)) for c, v in expr.whens]
    return exp.Case(ifs=ifs, default=to_sql(expr.default, columns))


_SQL_PARTS = {"YEAR": exp.Year, "QUARTER": exp.Quarter, "MONTH": exp.Month, "DAY": exp.Day}
_MONDAY = "1970-01-05"


def _date_part_sql(node: DatePart, columns: dict) -> exp.Expression:
    first, last = (_date_sql(d.isoformat()) for d in columns[node.arg.name].dates)
    day = exp.Least(this=exp.Greatest(this=sqlplan.col(node.arg.name), expressions=[first]),
                    expressions=[last])
    if node.part in _SQL_PARTS:
        return exp.Cast(this=_SQL_PARTS[node.part](this=day), to=exp.DataType.build("BIGINT"))
    since = exp.DateDiff(this=day, expression=_date_sql(_MONDAY), unit=exp.var("DAY"))
    week = exp.Mod(this=exp.Paren(this=exp.Add(this=exp.Mod(this=since, expression=_lit_sql(7)),
                                               expression=_lit_sql(7))),
                   expression=_lit_sql(7))
    return exp.Paren(this=exp.Add(this=exp.Paren(this=week), expression=_lit_sql(1)))


def _date_sql(iso: str) -> exp.Expression:
    return exp.Cast(this=exp.Literal.string(iso), to=exp.DataType.build("DATE"))


def _lit_sql(value) -> exp.Expression:
    if isinstance(value, str):
        return exp.Literal.string(value)
    kind = "BIGINT" if isinstance(value, int) else "DOUBLE"
    return exp.Cast(this=sqlplan.literal(value), to=exp.DataType.build(kind))


def _double(value: exp.Expression) -> exp.Expression:
    return exp.Cast(this=value, to=exp.DataType.build("DOUBLE"))


def _clamped_sql(name: str, col) -> exp.Expression:
    bounds = column_bounds(col) if col is not None and col.is_numeric else None
    if bounds is None:
        return sqlplan.col(name)
    return _clip_sql(sqlplan.col(name), bounds, col.type == "float")


def _clip_sql(value: exp.Expression, bounds, floating: bool) -> exp.Expression:
    lo, hi = (_lit_sql(float(b) if floating else b) for b in bounds)
    clipped = exp.Least(this=exp.Greatest(this=value, expressions=[lo]), expressions=[hi])
    if not floating:
        return clipped
    return exp.Case(ifs=[exp.If(this=exp.IsNan(this=value.copy()), true=lo.copy())],
                    default=clipped)


def _func_sql(node: Func, args: list[exp.Expression]) -> exp.Expression:
    name = node.name
    if name in ("LEAST", "GREATEST"):
        cls = exp.Least if name == "LEAST" else exp.Greatest
        return cls(this=args[0], expressions=args[1:])
    if name == "COALESCE":
        return exp.Coalesce(this=args[0], expressions=args[1:])
    if name == "ABS":
        return exp.Abs(this=args[0])
    if name == "CLAMP":
        lo, hi = node.args[1].value, node.args[2].value
        return _clip_sql(_double(args[0]), (lo, hi), True)
    x = _double(args[0])
    decimals = node.args[1].value if len(node.args) == 2 else 0
    if name == "ROUND":
        if decimals:
            return exp.Round(this=x, decimals=exp.Literal.number(decimals))
        return exp.Cast(this=exp.Round(this=x), to=exp.DataType.build("BIGINT"))
    cls = exp.Floor if name == "FLOOR" else exp.Ceil
    return exp.Cast(this=cls(this=x), to=exp.DataType.build("BIGINT"))
