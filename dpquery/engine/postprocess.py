"""Derived output columns, HAVING, ORDER BY and LIMIT on the released rows.

Everything here reads only noisy values, their intervals and public
configuration: post-processing, which costs no further privacy.

A derived column (`SUM(amount) / COUNT(*)`) gets its interval by interval
arithmetic on the intervals of the aggregates it reads. Each of those holds
with the request's confidence c, so all k of them hold together with at least
1 - k(1 - c) (a union bound), and then the derived value lies in the derived
interval. `notes` states that level for every derived column.
"""
from __future__ import annotations

import math

from dpquery.engine.outputs import Arith, Const, Ref, refs
from dpquery.engine.query import And, Between, Compare, InList, Not, Or


def output_columns(query) -> list[str]:
    """The answer's columns, in order: each value and, for aggregates, its interval."""
    if not query.select:
        cols = list(query.group_by)
        for a in query.aggregates:
            cols += [a.alias, f"{a.alias}_ci_low", f"{a.alias}_ci_high"]
        return cols
    cols = []
    for out in query.select:
        cols.append(out.name)
        if _has_interval(out.expr, query):
            cols += [f"{out.name}_ci_low", f"{out.name}_ci_high"]
    return cols


def _has_interval(expr, query) -> bool:
    aliases = {a.alias for a in query.aggregates}
    return any(r in aliases for r in refs(expr))


def finish(rows: list[dict], query) -> list[dict]:
    """Derived columns, then HAVING, ORDER BY and LIMIT, then the output columns only."""
    full = [{**row, **_derived(row, query)} for row in rows]
    if query.having is not None:
        full = [row for row in full if _holds(query.having, row)]
    for order in reversed(query.order_by):
        full.sort(key=lambda r: _sort_key(r.get(order.name)), reverse=order.descending)
    if query.limit is not None:
        full = full[: query.limit]
    if not query.select:
        return full
    columns = output_columns(query)
    return [{c: row[c] for c in columns} for row in full]


def _derived(row: dict, query) -> dict:
    out = {}
    for col in query.select:
        value, low, high = evaluate(col.expr, row)
        out[col.name] = value
        if _has_interval(col.expr, query):
            out[f"{col.name}_ci_low"], out[f"{col.name}_ci_high"] = low, high
    return out


def evaluate(expr, row: dict) -> tuple:
    """(value, low, high) of an expression; None where it has no value or no bound."""
    if isinstance(expr, Const):
        return expr.value, expr.value, expr.value
    if isinstance(expr, Ref):
        value = row.get(expr.name)
        low = row.get(f"{expr.name}_ci_low", value)
        high = row.get(f"{expr.name}_ci_high", value)
        return _clean(value), _clean(low), _clean(high)
    left, right = evaluate(expr.left, row), evaluate(expr.right, row)
    return _apply(expr.op, left, right)


def _clean(x):
    return None if isinstance(x, float) and math.isnan(x) else x


def _apply(op: str, a: tuple, b: tuple) -> tuple:
    value = _op(op, a[0], b[0])
    if None in (a[1], a[2], b[1], b[2]):
        return value, None, None
    if op in "+-":
        low = _op(op, a[1], b[1] if op == "+" else b[2])
        high = _op(op, a[2], b[2] if op == "+" else b[1])
        return value, low, high
    if op == "/" and b[1] <= 0 <= b[2]:
        return value, None, None  # the divisor may be 0: no bound
    corners = [_op(op, x, y) for x in (a[1], a[2]) for y in (b[1], b[2])]
    return value, min(corners), max(corners)


def _op(op: str, x, y):
    if x is None or y is None:
        return None
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    return x / y if y != 0 else None


def _holds(pred, row: dict) -> bool:
    """A HAVING condition on one row; a missing value matches no comparison."""
    if isinstance(pred, And):
        return all(_holds(p, row) for p in pred.items)
    if isinstance(pred, Or):
        return any(_holds(p, row) for p in pred.items)
    if isinstance(pred, Not):
        return not _holds(pred.item, row)
    value = _clean(row.get(pred.column))
    if value is None:
        return False
    try:
        if isinstance(pred, Compare):
            return _compare(value, pred.op, pred.value)
        if isinstance(pred, InList):
            return (value in pred.values) != pred.negated
        if isinstance(pred, Between):
            return (pred.low <= value <= pred.high) != pred.negated
    except TypeError:  # text compared with a number: no match
        return False
    return False


def _compare(value, op: str, literal) -> bool:
    return {"=": value == literal, "<>": value != literal, "<": value < literal,
            "<=": value <= literal, ">": value > literal, ">=": value >= literal}[op]


def _sort_key(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0)
    return (0, value)


def notes(query, confidence: float) -> list[str]:
    """What the answer's derived columns and filters mean (public: the query and c only)."""
    out = []
    aliases = {a.alias for a in query.aggregates}
    for col in query.select:
        k = len({r for r in refs(col.expr) if r in aliases})
        if isinstance(col.expr, Arith) and k:
            level = max(0.0, 1 - k * (1 - confidence))
            out.append(f"{col.name!r} is computed from {k} released aggregate"
                       f"{'s' if k != 1 else ''}; its interval is interval arithmetic on "
                       f"theirs and holds with at least {level:.0%} confidence (a union "
                       "bound). It cost nothing extra.")
    shown = {r for col in query.select for r in refs(col.expr)}
    hidden = [a.alias for a in query.aggregates if query.select and a.alias not in shown]
    if hidden:
        out.append(f"Released to compute, filter or sort the answer but not shown: "
                   f"{', '.join(hidden)} (each took its share of the spend).")
    if query.having is not None:
        out.append("HAVING filters the noisy rows (post-processing): which rows pass depends "
                   "on the noise.")
    return out
