"""Row-level derived columns: named, frozen expressions computed on every row before bounding.

`SELECT CASE WHEN age_band IN ('18-24', '25-34') THEN 'young' ELSE 'older' END
AS life_stage, SUM(FLOOR(amount / 10) * 10) ...` becomes a `Query` whose
`derived` holds one `Derived(name, expr)` per expression; WHERE, aggregates and
GROUP BY then name the derived column like any other. The nodes here only say
*what* is computed; derived_bounds.py proves each one's type, bounds and
public domain from configuration, derived_compile.py writes it for polars and
for SQL engines, derived_table.py adds the columns to an opened table.

Nodes: `Col` (a column; as a value it enters clamped to its configured bounds),
`Lit`, `Arith` (+ - * /), `Func` (LEAST, GREATEST, ABS, ROUND, FLOOR, CEIL,
COALESCE, CLAMP), `Case` (WHEN <condition> THEN <value> ... ELSE <value>) and
`Truth` (a condition as a value: 1 when it holds, else 0) and `DatePart` (YEAR,
QUARTER, MONTH, DAY or DOW of a date column, the day read clamped to the
column's configured days; DOW counts ISO 8601 days, 1 = Monday .. 7 = Sunday,
on every engine). Conditions are the
query model's predicates (query.py), whose columns may be base or derived.

Privacy: a derived column is a deterministic function of one row that leaves
the privacy-unit column alone. Mapping every row of a dataset through it maps
two datasets differing in one customer's rows to two datasets differing in
that customer's rows only (the same customer, the same number of rows): the
map is 1-stable under the distance OpenDP's plan is built for, so the bounded
aggregation and OpenDP's release that follow keep their guarantee. Bounds and
public domains are proven from configuration, never read from the data; the
clamp to them still happens in the bounded aggregation, so a wrong bound
costs accuracy, never privacy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

from dpquery.errors import InvalidQuery

OPERATORS = ("+", "-", "*", "/")
FUNCTIONS = {"LEAST": (2, 16), "GREATEST": (2, 16), "ABS": (1, 1), "ROUND": (1, 2),
             "FLOOR": (1, 1), "CEIL": (1, 1), "COALESCE": (1, 16), "CLAMP": (3, 3)}
MAX_NODES = 64      # columns, literals, operators and condition terms in one derived column
MAX_DERIVED = 16    # derived columns in one query
MAX_DECIMALS = 6    # ROUND(x, d): 0 <= d <= MAX_DECIMALS


@dataclass(frozen=True)
class Col:
    """A column (base or derived) read as a value."""

    name: str


@dataclass(frozen=True)
class Lit:
    """A number or a quoted string."""

    value: Union[str, int, float]

    def __post_init__(self):
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise InvalidQuery("a literal in an expression must be a number or a quoted string")
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidQuery("numbers in an expression must be finite")
        if isinstance(v, int) and abs(v) > 2 ** 53:
            raise InvalidQuery("whole numbers in an expression must lie within ±2^53")


@dataclass(frozen=True)
class Arith:
    op: str
    left: object
    right: object

    def __post_init__(self):
        if self.op not in OPERATORS:
            raise InvalidQuery(f"unknown operator {self.op!r}; use one of {', '.join(OPERATORS)}")


@dataclass(frozen=True)
class Func:
    name: str
    args: tuple

    def __post_init__(self):
        if self.name not in FUNCTIONS:
            raise InvalidQuery(f"unknown row function {self.name}; supported: "
                               f"{', '.join(FUNCTIONS)}")
        low, high = FUNCTIONS[self.name]
        if not low <= len(self.args) <= high:
            count = str(low) if low == high else f"{low} to {high}"
            raise InvalidQuery(f"{self.name} takes {count} arguments, got {len(self.args)}")
        if self.name == "ROUND" and len(self.args) == 2:
            d = self.args[1]
            if not (isinstance(d, Lit) and isinstance(d.value, int)
                    and 0 <= d.value <= MAX_DECIMALS):
                raise InvalidQuery(f"ROUND(x, d) takes a whole number of decimals d from 0 "
                                   f"to {MAX_DECIMALS}")
        if self.name == "CLAMP":
            lo, hi = self.args[1], self.args[2]
            if not all(isinstance(b, Lit) and not isinstance(b.value, str) for b in (lo, hi)) \
                    or lo.value > hi.value:
                raise InvalidQuery("CLAMP(expr, low, high) takes two numbers with low <= high, "
                                   "e.g. CLAMP(amount * 2, 0, 150)")


@dataclass(frozen=True)
class Case:
    """WHEN conditions in order, the first that holds gives the value; else `default`."""

    whens: tuple  # ((predicate, value), ...)
    default: object

    def __post_init__(self):
        if not self.whens:
            raise InvalidQuery("CASE needs at least one WHEN ... THEN ...")
        if self.default is None:
            raise InvalidQuery("CASE needs an ELSE: rows matching no WHEN would be NULL. "
                               "Add ELSE <value>, e.g. ELSE 'other' or ELSE 0")


@dataclass(frozen=True)
class Truth:
    """A condition as a value: 1 on rows where it holds, 0 elsewhere."""

    condition: object


DATE_PARTS = ("YEAR", "QUARTER", "MONTH", "DAY", "DOW")


@dataclass(frozen=True)
class DatePart:
    """A whole-number part of a date column's day (DOW: ISO 1 = Monday .. 7 = Sunday)."""

    part: str
    arg: object

    def __post_init__(self):
        if self.part not in DATE_PARTS:
            raise InvalidQuery(f"unknown date part {self.part}; supported: "
                               f"{', '.join(DATE_PARTS)}")


Expr = Union[Col, Lit, Arith, Func, Case, Truth, DatePart]


@dataclass(frozen=True)
class Derived:
    """A named row-level column: `expr` computed on every row before bounding."""

    name: str
    expr: object

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise InvalidQuery("a derived column needs a name")
        n = size(self.expr)
        if n > MAX_NODES:
            raise InvalidQuery(f"the expression {self.name!r} has {n} terms; the limit is "
                               f"{MAX_NODES}. Split it or simplify it")


def children(node) -> list:
    """The sub-expressions of a node (conditions' own terms are counted by `size`)."""
    if isinstance(node, Arith):
        return [node.left, node.right]
    if isinstance(node, Func):
        return list(node.args)
    if isinstance(node, Case):
        return [v for _c, v in node.whens] + [node.default]
    if isinstance(node, DatePart):
        return [node.arg]
    return []


def conditions(node) -> list:
    """The predicates a node tests directly."""
    if isinstance(node, Case):
        return [c for c, _v in node.whens]
    if isinstance(node, Truth):
        return [node.condition]
    return []


def all_conditions(expr) -> list:
    """Every condition an expression tests, at any depth (CASE WHEN, conditions as values)."""
    found, stack = [], [expr]
    while stack:
        node = stack.pop()
        found += conditions(node)
        stack.extend(children(node))
    return found


def size(expr) -> int:
    """Nodes and condition terms of an expression, walked without recursion."""
    from dpquery.engine.query import condition_size
    total, stack = 0, [expr]
    while stack:
        node = stack.pop()
        total += 1 + sum(condition_size(c)[0] for c in conditions(node))
        stack.extend(children(node))
    return total


def columns(expr) -> set[str]:
    """Every column an expression reads, as a value or in a condition."""
    from dpquery.engine.query import predicate_columns
    found, stack = set(), [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Col):
            found.add(node.name)
        for cond in conditions(node):
            found |= predicate_columns(cond)
        stack.extend(children(node))
    return found


def check_all(derived: tuple) -> None:
    """Distinct names, at most MAX_DERIVED, each reading only columns defined before it."""
    if len(derived) > MAX_DERIVED:
        raise InvalidQuery(f"the query computes {len(derived)} row-level expressions; the "
                           f"limit is {MAX_DERIVED}")
    seen: set[str] = set()
    for d in derived:
        if not isinstance(d, Derived):
            raise InvalidQuery("derived columns must be Derived(name, expression) nodes")
        if d.name in seen:
            raise InvalidQuery(f"two row-level expressions are named {d.name!r}; give each its "
                               "own alias (AS ...)")
        seen.add(d.name)
