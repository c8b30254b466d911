"""What configuration proves about a derived column: its type, bounds and public values.

Interval arithmetic over the configured bounds of the columns an expression
computes with (a column enters clamped to them, so the proof holds for every
row, whatever the data), and the finite set of values it can take when every
input has one (public `values`, whole numbers in a small bounded range,
literals). Nothing here reads data: the result is public and may appear in
messages. Refusals say how to write the expression so it can be proven.
"""
from __future__ import annotations

import datetime
import itertools
import math
from dataclasses import dataclass

from dpquery.engine.derived import Arith, Case, Col, DatePart, Func, Lit, Truth
from dpquery.errors import InvalidQuery

MAX_MAGNITUDE = 2 ** 53  # every bound stays exactly representable as a float and an int64
MAX_SET = 20_000         # largest value set worked out for one node (else: not listable)


@dataclass(frozen=True)
class Info:
    type: str                      # "string" | "int" | "float" | "date" (a column only)
    bounds: tuple | None = None    # numeric: every value lies in [lo, hi] (None: unbounded);
                                   # date: the configured (first, last) day
    domain: tuple | None = None    # every value it can take, sorted (None: not listable)

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "float")


def column_bounds(col) -> tuple | None:
    """The range a numeric column is clamped to when an expression computes with it."""
    if col.lower is not None and col.upper is not None:
        lo, hi = col.lower, col.upper
    elif col.values:
        lo, hi = min(col.values), max(col.values)
    else:
        return None
    return (math.ceil(lo), math.floor(hi)) if col.type == "int" else (float(lo), float(hi))


def column_info(col) -> Info:
    """A configured column read as a value."""
    if col.type == "date":
        return Info("date", col.dates, None)
    if not col.is_numeric:
        return Info("string", None, tuple(sorted(col.values)) if col.values else None)
    bounds = column_bounds(col)
    if col.type == "int" and bounds is not None:
        return Info("int", bounds, _int_range(*bounds))
    return Info(col.type, bounds, None)


def analyse(expr, lookup) -> Info:
    """Type, bounds and values of `expr`; `lookup(name)` gives a column's Info."""
    if isinstance(expr, Col):
        return lookup(expr.name)
    if isinstance(expr, Lit):
        v = expr.value
        if isinstance(v, str):
            return Info("string", None, (v,))
        return Info("int" if isinstance(v, int) else "float", (v, v), (v,))
    if isinstance(expr, Truth):
        return Info("int", (0, 1), (0, 1))
    if isinstance(expr, Arith):
        return _arith(expr, analyse(expr.left, lookup), analyse(expr.right, lookup))
    if isinstance(expr, Func):
        return _func(expr, [analyse(a, lookup) for a in expr.args], lookup)
    if isinstance(expr, DatePart):
        return date_part(expr, analyse(expr.arg, lookup))
    if isinstance(expr, Case):
        return _common("CASE", [analyse(v, lookup) for _c, v in expr.whens]
                       + [analyse(expr.default, lookup)])
    raise InvalidQuery("unsupported row-level expression")


DATE_HINT = ("use a whole-number part of it, YEAR(d), QUARTER(d), MONTH(d), DAY(d) or "
             "DAYOFWEEK(d), or compare it with a date in a condition, e.g. CASE WHEN d >= "
             "DATE '2024-01-01' THEN ...")


def _numbers(what: str, infos: list[Info]) -> None:
    if any(i.type == "date" for i in infos):
        raise InvalidQuery(f"{what} cannot compute with a date column itself; {DATE_HINT}")
    if not all(i.numeric for i in infos):
        raise InvalidQuery(f"{what} computes with numbers; a text column or quoted string "
                           "cannot be used there (compare text with = or IN inside CASE WHEN)")
    if any(i.bounds is None for i in infos):
        raise InvalidQuery(f"{what} reads a numeric column without configured bounds or public "
                           "values, so its result cannot be bounded; wrap that column in "
                           "CLAMP(column, low, high)")


def _checked(type_: str, lo, hi, domain) -> Info:
    if not (math.isfinite(lo) and math.isfinite(hi)) or max(abs(lo), abs(hi)) > MAX_MAGNITUDE:
        raise InvalidQuery(f"an expression's values could reach {max(abs(lo), abs(hi)):.3g}, "
                           "beyond ±2^53 where arithmetic stops being exact; scale it down or "
                           "CLAMP(expr, low, high) its inputs")
    if type_ == "int":
        lo, hi = int(lo), int(hi)
    return Info(type_, (lo, hi), domain)


def _arith(node: Arith, a: Info, b: Info) -> Info:
    _numbers(f"the operator {node.op}", [a, b])
    (alo, ahi), (blo, bhi) = a.bounds, b.bounds
    if node.op == "/" and blo <= 0 <= bhi:
        raise InvalidQuery(f"division by an expression whose values lie in [{blo:g}, {bhi:g}], "
                           "which contains 0; divide by something that cannot be 0, e.g. "
                           "GREATEST(x, 1) or CLAMP(x, 1, 100)")
    op = _OPS[node.op]
    corners = [op(x, y) for x in (alo, ahi) for y in (blo, bhi)]
    type_ = "int" if node.op != "/" and a.type == b.type == "int" else "float"
    domain = _combine(op, [a.domain, b.domain])
    return _checked(type_, min(corners), max(corners), domain)


_OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
        "/": lambda x, y: x / y}


def _func(node: Func, args: list[Info], lookup) -> Info:
    name = node.name
    if name == "COALESCE":  # columns here are never NULL (see derived_table.py)
        return _common(name, args)
    if name == "CLAMP":
        x = args[0]
        if not x.numeric or x.bounds is None and not isinstance(node.args[0], Col):
            _numbers(name, [x])
        lo, hi = node.args[1].value, node.args[2].value
        type_ = "int" if x.type == "int" and all(isinstance(v, int) for v in (lo, hi)) else "float"
        if x.domain is not None:
            domain = _combine(lambda v: min(max(v, lo), hi), [x.domain])
        else:
            domain = _int_range(lo, hi) if type_ == "int" else None
        return _checked(type_, lo, hi, domain)
    _numbers(name, args[:1] if name == "ROUND" else args)
    if name in ("LEAST", "GREATEST"):
        pick = min if name == "LEAST" else max
        type_ = "int" if all(a.type == "int" for a in args) else "float"
        return _checked(type_, pick(a.bounds[0] for a in args), pick(a.bounds[1] for a in args),
                        _combine(lambda *v: pick(v), [a.domain for a in args]))
    x = args[0]
    lo, hi = x.bounds
    if name == "ABS":
        low = lo if lo >= 0 else (-hi if hi <= 0 else 0)
        return _checked(x.type, low, max(abs(lo), abs(hi)), _combine(abs, [x.domain]))
    decimals = node.args[1].value if len(node.args) == 2 else 0
    rnd = {"FLOOR": math.floor, "CEIL": math.ceil, "ROUND": round_half_away}[name]
    if decimals:
        scale = 10 ** decimals
        return _checked("float", math.floor(lo * scale) / scale, math.ceil(hi * scale) / scale,
                        None)
    low, high = rnd(lo), rnd(hi)
    domain = _combine(rnd, [x.domain]) if x.domain is not None else _int_range(low, high)
    return _checked("int", low, high, domain)


def selected(expr) -> str | None:
    """The column an expression only selects: every value it can take is that column
    (as stored, clamped) or 0, e.g. CASE WHEN c THEN amount ELSE 0 END. None otherwise."""
    leaves, stack = [], [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Case):
            stack += [v for _c, v in node.whens] + [node.default]
        elif isinstance(node, Func) and node.name == "COALESCE":  # never NULL: its first
            stack.append(node.args[0])
        else:
            leaves.append(node)
    names = {n.name for n in leaves if isinstance(n, Col)}
    zeros = all(isinstance(n, Col) or isinstance(n, Lit) and not isinstance(n.value, str)
                and n.value == 0 for n in leaves)
    return names.pop() if len(names) == 1 and zeros else None


def replace_column(expr, by):
    """`expr` with every value leaf that is a column replaced by `by` (for `selected`)."""
    if isinstance(expr, Col):
        return by
    if isinstance(expr, Case):
        return Case(tuple((c, replace_column(v, by)) for c, v in expr.whens),
                    replace_column(expr.default, by))
    if isinstance(expr, Func) and expr.name == "COALESCE":
        return replace_column(expr.args[0], by)
    return expr


def round_half_away(x) -> int:
    """ROUND(x) as the engines compute it: halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _common(what: str, infos: list[Info]) -> Info:
    """CASE branches or COALESCE arguments: one type, the union of bounds and values."""
    if any(i.type == "date" for i in infos):
        _numbers(what, infos)
    if len({i.numeric for i in infos}) != 1:
        raise InvalidQuery(f"{what} mixes text and numbers; make every branch text (quoted) "
                           "or every branch a number")
    if infos[0].type == "string":
        domains = [i.domain for i in infos]
        domain = None if None in domains else tuple(sorted(set().union(*domains)))
        return Info("string", None, domain)
    _numbers(what, infos)
    type_ = "int" if all(i.type == "int" for i in infos) else "float"
    domains = [i.domain for i in infos]
    domain = None if None in domains else tuple(sorted(set().union(*domains)))
    return _checked(type_, min(i.bounds[0] for i in infos), max(i.bounds[1] for i in infos),
                    domain)


def _combine(fn, domains: list) -> tuple | None:
    """fn over every combination of the inputs' values (None: some input is not listable)."""
    if any(d is None for d in domains) or math.prod(len(d) for d in domains) > MAX_SET:
        return None
    try:
        return tuple(sorted({fn(*vals) for vals in itertools.product(*domains)}))
    except ZeroDivisionError:  # bounds refused it already; a listed 0 cannot divide here
        return None


def _int_range(lo, hi) -> tuple | None:
    lo, hi = math.ceil(lo), math.floor(hi)
    return tuple(range(lo, hi + 1)) if hi - lo + 1 <= MAX_SET else None


def date_part(node: DatePart, x: Info) -> Info:
    """A part of a date column: whole numbers whose values follow from its configured days
    (the day is clamped to them first), e.g. MONTH over days within one year lists only
    the months those days cover."""
    if x.type != "date":
        raise InvalidQuery(f"{node.part}(...) needs a date column (GET /v1/datasets lists "
                           f"each column's type); this one reads a {x.type} value")
    first, last = x.bounds
    days = (last - first).days
    if node.part == "YEAR":
        domain = tuple(range(first.year, last.year + 1))
    elif node.part in ("MONTH", "QUARTER"):
        months = _months(first, last)
        domain = tuple(sorted({(m - 1) // 3 + 1 for m in months} if node.part == "QUARTER"
                              else months))
    elif node.part == "DAY":
        domain = _over_days(first, days, 31, lambda d: d.day, range(1, 32))
    else:
        domain = _over_days(first, days, 7, lambda d: d.isoweekday(), range(1, 8))
    return Info("int", (domain[0], domain[-1]), domain)


def _months(first, last) -> set:
    span = (last.year - first.year) * 12 + last.month - first.month
    if span >= 11:
        return set(range(1, 13))
    return {(first.month - 1 + i) % 12 + 1 for i in range(span + 1)}


def _over_days(first, days: int, period: int, part, every) -> tuple:
    """The part's values over the days first .. first + days (all of `every` past a period)."""
    if days >= period:
        return tuple(every)
    return tuple(sorted({part(first + datetime.timedelta(d)) for d in range(days + 1)}))
