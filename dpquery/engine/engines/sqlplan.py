"""A plan part's bounded aggregation as a SQL tree (sqlglot), for any SQL engine.

The tree is built node by node from the query model: no text from a partner is
ever pasted into SQL. `compile_part(part, source).sql(dialect)` gives DuckDB's
or Spark's SQL for the same computation as engines/polars.py:

    rows:      SELECT by, COUNT(*), SUM(clamp(x) - c), SUM((clamp(x) - c)²) FROM t
               WHERE _row_rank < k AND <where> GROUP BY by
    customers: WITH cg AS (SELECT unit, by, MAX(<flag>), SUM(clamp(x)) FROM t
                           WHERE <where> GROUP BY unit, by),
                    kept AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY unit
                             ORDER BY by) AS _g FROM cg)
               SELECT by, COUNT(*), SUM(flag), SUM(clamp(total)) FROM kept
               WHERE _g <= G GROUP BY by

ROW_NUMBER over a customer's distinct groups in key order keeps the groups
the reference keeps (`rank("dense").over(unit) <= G`, frames.truncate_groups).
"""
from __future__ import annotations

from sqlglot import exp

from dpquery.engine.bounded import Cell, Part
from dpquery.engine.prepare import ROW_RANK
from dpquery.engine.query import And, Compare, InList, Not, Or

_COMPARE = {"=": exp.EQ, "<>": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
GROUP_RANK = "_g"


def compile_part(part: Part, source: exp.Expression) -> exp.Select:
    """The exact bounded aggregation of `part` over the prepared table `source`."""
    if part.shape == "rows":
        return _rows(part, source)
    return _customers(part, source)


def _rows(part: Part, source: exp.Expression) -> exp.Select:
    bound = exp.LT(this=col(ROW_RANK), expression=exp.Literal.number(part.rows_per_customer))
    conds = [bound] + ([predicate(part.where)] if part.where is not None else [])
    aggs = [exp.alias_(_row_agg(c), c.name, quoted=True) for c in part.cells]
    query = exp.select(*map(col, part.by), *aggs).from_(source).where(exp.and_(*conds))
    return query.group_by(*map(col, part.by)) if part.by else query


def _row_agg(cell: Cell) -> exp.Expression:
    if cell.kind == "len":
        return exp.Count(this=exp.Star())
    value = exp.Sub(this=_clamp(col(cell.column), cell.bounds), expression=_num(cell.center))
    if cell.kind == "sq":  # 64-bit products and sums: mechanisms.square_fits checked the bound
        value = _bigint(value)  # an INTEGER column's square would overflow 32 bits
        value = exp.Mul(this=value, expression=value.copy())
    return _bigint(exp.Sum(this=value))


def _customers(part: Part, source: exp.Expression) -> exp.Select:
    keys = [col(part.unit), *map(col, part.by)]
    pre = [exp.alias_(e, c.name, quoted=True) for c in part.cells
           if (e := _pre_agg(c)) is not None]
    cg = exp.select(*keys, *pre).from_(source).group_by(*keys)
    if part.where is not None:
        cg = cg.where(predicate(part.where))
    body: exp.Select = exp.select("*").from_("cg")
    if part.groups is not None and part.by:
        order = exp.Order(expressions=[exp.Ordered(this=col(b)) for b in part.by])
        rank = exp.Window(this=exp.RowNumber(), partition_by=[col(part.unit)], order=order)
        kept = exp.select(exp.Star(), exp.alias_(rank, GROUP_RANK)).from_("cg")
        body = (exp.select("*").from_("kept")
                .where(exp.LTE(this=exp.column(GROUP_RANK), expression=_num(part.groups))))
        body = body.with_("kept", as_=kept)
    aggs = [exp.alias_(_customer_agg(c), c.name, quoted=True) for c in part.cells]
    outer = exp.select(*map(col, part.by), *aggs).from_(exp.Subquery(this=body, alias="b"))
    outer = outer.with_("cg", as_=cg)
    return outer.group_by(*map(col, part.by)) if part.by else outer


def _pre_agg(cell: Cell) -> exp.Expression | None:
    if cell.kind in ("flag", "sign"):
        case = exp.Case(ifs=[exp.If(this=predicate(cell.condition), true=_num(1))], default=_num(0))
        return exp.Max(this=case)
    if cell.kind == "total":
        return exp.Sum(this=_clamp(col(cell.column), cell.bounds))
    return None


def _customer_agg(cell: Cell) -> exp.Expression:
    if cell.kind == "len":
        return exp.Count(this=exp.Star())
    if cell.kind == "flag":
        return _bigint(exp.Sum(this=col(cell.name)))
    if cell.kind == "sign":  # +1 with a matching row, -1 without
        return _bigint(exp.Sum(this=exp.Sub(this=exp.Mul(this=_num(2), expression=col(cell.name)),
                                            expression=_num(1))))
    return _bigint(exp.Sum(this=_clamp(col(cell.name), cell.total_bounds)))


def predicate(pred) -> exp.Expression:
    """The query model's condition as a SQL tree; long AND/OR chains stay balanced."""
    if isinstance(pred, (And, Or)):
        return _balanced([predicate(p) for p in pred.items], exp.And if isinstance(pred, And) else exp.Or)
    if isinstance(pred, Not):
        return exp.Not(this=exp.Paren(this=predicate(pred.item)))
    column = col(pred.column)
    if isinstance(pred, Compare):
        return _COMPARE[pred.op](this=column, expression=literal(pred.value))
    if isinstance(pred, InList):
        node = exp.In(this=column, expressions=[literal(v) for v in pred.values])
    else:
        node = exp.Between(this=column, low=literal(pred.low), high=literal(pred.high))
    return exp.Not(this=exp.Paren(this=node)) if pred.negated else node


def _balanced(items: list, node) -> exp.Expression:
    if len(items) == 1:
        return exp.Paren(this=items[0])
    mid = len(items) // 2
    return exp.Paren(this=node(this=_balanced(items[:mid], node), expression=_balanced(items[mid:], node)))


def literal(value) -> exp.Expression:
    if isinstance(value, str):
        return exp.Literal.string(value)
    return _num(value)


def _num(value) -> exp.Expression:
    node = exp.Literal.number(repr(abs(value)))
    return exp.Neg(this=node) if value < 0 else node


def _clamp(value: exp.Expression, bounds) -> exp.Expression:
    low, high = bounds
    return exp.Least(this=exp.Greatest(this=value, expressions=[_num(low)]), expressions=[_num(high)])


def _bigint(value: exp.Expression) -> exp.Expression:
    return exp.Cast(this=value, to=exp.DataType.build("BIGINT"))


def col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)
