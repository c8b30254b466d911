"""Names as analysts type them -> names as the catalog spells them.

SQL identifiers are case-insensitive here, quoted or not (`PURCHASES`,
`"Region"`), and a schema-qualified table (`shop.purchases`) maps to the
dataset of that name when exactly one dataset matches. Names that match
nothing are left as written, so the policy check names them in its refusal.
Only configuration is read: the public column names of each dataset.
"""
from __future__ import annotations

import dataclasses

from dpquery.engine import derived as rows
from dpquery.engine.derived import Derived
from dpquery.engine.outputs import Arith, Output, Ref
from dpquery.engine.query import And, Not, Or, OrderBy, Query


def dataset_name(name: str, datasets: dict) -> str:
    """The configured dataset `name` means (case-insensitively, when unambiguous)."""
    if name in datasets:
        return name
    found = [d for d in datasets if d.casefold() == name.casefold()]
    return found[0] if len(found) == 1 else name


def privacy_unit(name: str, datasets: dict, default: str) -> str:
    ds = datasets.get(dataset_name(name, datasets))
    return ds.privacy_unit if ds is not None else default


def column_names(ds) -> list[str]:
    """Every column a query may name, excluded ones too (so refusals can name them)."""
    extra = [ds.privacy_unit, ds.consent_column, *ds.excluded_columns]
    return list(dict.fromkeys([*ds.columns, *(c for c in extra if c)]))


def _matcher(candidates: list[str]):
    exact = set(candidates)
    folded: dict[str, list[str]] = {}
    for c in candidates:
        folded.setdefault(c.casefold(), []).append(c)

    def match(name: str) -> str:
        if name in exact:
            return name
        found = folded.get(name.casefold(), [])
        return found[0] if len(found) == 1 else name
    return match


def resolve(query: Query, datasets: dict | None) -> Query:
    """`query` with its dataset and column names spelled as configured."""
    if not datasets:
        return query
    name = dataset_name(query.dataset, datasets)
    ds = datasets.get(name)
    if ds is None:
        return query
    col = _matcher(column_names(ds) + [d.name for d in query.derived])
    derived = tuple(Derived(d.name, _row_expr(d.expr, col)) for d in query.derived)
    aggs = tuple(dataclasses.replace(
        a, column=col(a.column) if a.column else None,
        condition=_predicate(a.condition, col)) for a in query.aggregates)
    group_by = tuple(col(g) for g in query.group_by)
    internal = [*group_by, *(a.alias for a in aggs)]
    ref = _matcher(internal)
    select = tuple(Output(o.name, _expr(o.expr, lambda n: ref(col(n)))) for o in query.select)
    out_name = _matcher([o.name for o in select] + [n for n in internal
                                                    if n not in {o.name for o in select}])
    return dataclasses.replace(
        query, dataset=name, aggregates=aggs, group_by=group_by, select=select, derived=derived,
        where=_predicate(query.where, col), having=_predicate(query.having, out_name),
        order_by=tuple(OrderBy(out_name(o.name), o.descending) for o in query.order_by))


def _predicate(pred, col):
    if pred is None:
        return None
    if isinstance(pred, (And, Or)):
        return type(pred)(tuple(_predicate(p, col) for p in pred.items))
    if isinstance(pred, Not):
        return Not(_predicate(pred.item, col))
    return dataclasses.replace(pred, column=col(pred.column))


def _expr(expr, col):
    if isinstance(expr, Ref):
        return Ref(col(expr.name))
    if isinstance(expr, Arith):
        return Arith(expr.op, _expr(expr.left, col), _expr(expr.right, col))
    return expr


def _row_expr(expr, col):
    """A derived column's expression with its columns spelled as configured."""
    if isinstance(expr, rows.Col):
        return rows.Col(col(expr.name))
    if isinstance(expr, rows.Arith):
        return rows.Arith(expr.op, _row_expr(expr.left, col), _row_expr(expr.right, col))
    if isinstance(expr, rows.Func):
        return rows.Func(expr.name, tuple(_row_expr(a, col) for a in expr.args))
    if isinstance(expr, rows.Case):
        return rows.Case(tuple((_predicate(c, col), _row_expr(v, col)) for c, v in expr.whens),
                         _row_expr(expr.default, col))
    if isinstance(expr, rows.Truth):
        return rows.Truth(_predicate(expr.condition, col))
    return expr
