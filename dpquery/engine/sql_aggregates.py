"""SQL aggregate calls -> `Aggregate` nodes (sql.py reads the rest of the statement).

COUNT(*), COUNT(col), COUNT(DISTINCT <privacy unit>), SUM, AVG, MEDIAN,
QUANTILE(col, q), PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col),
VARIANCE/VAR_SAMP/VAR_POP, STDDEV/STDDEV_SAMP/STDDEV_POP/STD and
PURCHASE_RATE(<condition>). Anything else is refused with the list.
"""
from __future__ import annotations

from sqlglot import exp

from dpquery.engine.query import Aggregate
from dpquery.engine.sql import _column, _node_error, _number, _predicate

FUNCTIONS = ("COUNT(*), COUNT(col), COUNT(DISTINCT <privacy unit>), SUM, AVG, MEDIAN, QUANTILE, "
             "PERCENTILE_CONT, VARIANCE, VAR_POP, STDDEV, STDDEV_POP, PURCHASE_RATE")
ANONYMOUS_AGGREGATES = ("PURCHASE_RATE", "STD", "QUANTILE", "MEDIAN")
_SPREADS = {exp.Variance: "var_samp", exp.VariancePop: "var_pop", exp.Stddev: "stddev_samp",
            exp.StddevSamp: "stddev_samp", exp.StddevPop: "stddev_pop"}


def aggregate(node, alias, unit: str, text: str) -> Aggregate:
    """One aggregate call of the select list, HAVING or ORDER BY -> `Aggregate`."""
    if isinstance(node, exp.Count):
        return _count(node, alias, unit, text)
    simple = {exp.Sum: "sum", exp.Avg: "avg"}
    for cls, kind in simple.items():
        if isinstance(node, cls):
            return Aggregate(kind, alias or f"{kind}_{_column(node.this, text)}",
                             column=_column(node.this, text))
    for cls, kind in _SPREADS.items():
        if isinstance(node, cls):
            return _spread(kind, node.this, alias, text)
    if isinstance(node, exp.Anonymous) and node.name.upper() == "STD":  # MySQL: STDDEV_POP
        if len(node.expressions) != 1:
            raise _node_error(text, node, "STD takes one numeric column")
        return _spread("stddev_pop", node.expressions[0], alias, text)
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, (exp.PercentileCont,
                                                                    exp.PercentileDisc)):
        return _percentile(node, alias, text)
    if isinstance(node, exp.Median):
        column = _column(node.this, text)
        return Aggregate("quantile", alias or f"median_{column}", column=column, quantile=0.5)
    if isinstance(node, exp.Quantile):
        column = _column(node.this, text)
        q = _number(node.args.get("quantile"), text)
        return Aggregate("quantile", alias or f"q{q:g}_{column}", column=column, quantile=float(q))
    if isinstance(node, exp.Anonymous) and node.name.upper() == "PURCHASE_RATE":
        if len(node.expressions) != 1:
            raise _node_error(text, node, "PURCHASE_RATE takes one condition, e.g. "
                              "PURCHASE_RATE(category = 'snacks')")
        return Aggregate("purchase_rate", alias or "purchase_rate",
                         condition=_predicate(node.expressions[0], text))
    if isinstance(node, (exp.Anonymous, exp.Func)):
        name = node.name.upper() if isinstance(node, exp.Anonymous) else node.key.upper()
        raise _node_error(text, node, f"unknown function {name}; supported: {FUNCTIONS}")
    raise _node_error(text, node, f"select group columns and aggregates only ({FUNCTIONS})")


def _count(node: exp.Count, alias, unit: str, text: str) -> Aggregate:
    inner = node.this
    if isinstance(inner, exp.Star):
        return Aggregate("count", alias or "count")
    if isinstance(inner, exp.Distinct) and len(inner.expressions) == 1:
        column = _column(inner.expressions[0], text)
        if column.casefold() == unit.casefold():
            return Aggregate("count_customers", alias or "customers")
        raise _node_error(text, node, f"COUNT(DISTINCT {column}) would reveal how many distinct "
                          f"values exist; COUNT(DISTINCT {unit}) counts customers. For the "
                          f"values of {column}, GROUP BY it (its public values are listed "
                          "in GET /v1/datasets)")
    if isinstance(inner, exp.Column):  # non-null rows: see the note plan.py adds
        return Aggregate("count", alias or f"count_{inner.name}", column=inner.name)
    raise _node_error(text, node, f"COUNT supports COUNT(*), COUNT(column) and "
                      f"COUNT(DISTINCT {unit})")


def _spread(kind: str, node, alias, text: str) -> Aggregate:
    column = _column(node, text)
    return Aggregate(kind, alias or f"{kind}_{column}", column=column)


def _percentile(node: exp.WithinGroup, alias, text: str) -> Aggregate:
    """PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col): a quantile among the candidates."""
    order = node.expression.expressions if isinstance(node.expression, exp.Order) else []
    if len(order) != 1 or order[0].args.get("desc"):
        raise _node_error(text, node, "PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col) takes one "
                          "column in ascending order; for the top, use 1 - q")
    column = _column(order[0].this, text)
    q = _number(node.this.this, text)
    return Aggregate("quantile", alias or f"q{q:g}_{column}", column=column, quantile=float(q))
