"""The one internal query model: frozen nodes that check themselves.

SQL text (sql.py) and JSON documents (jsonquery.py) both become these nodes; the
planner reads only these. `canonical()` gives the text that identifies a query
for the answer cache and the audit trail.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Union

from dpquery.errors import InvalidQuery
from dpquery.engine import derived
from dpquery.engine.outputs import Output, refs

Scalar = Union[str, int, float]
COMPARISONS = ("=", "<>", "<", "<=", ">", ">=")
SPREADS = ("var_pop", "var_samp", "stddev_pop", "stddev_samp")
AGGREGATES = ("count", "count_customers", "sum", "avg", "quantile", "purchase_rate", *SPREADS)
NEEDS_COLUMN = ("sum", "avg", "quantile", *SPREADS)
MAY_NAME_COLUMN = ("count",)  # COUNT(col): non-null rows of col

# Query-size budget, checked before anything is planned. OpenDP and polars walk a
# condition recursively on the native stack, so an oversized one kills the worker
# (SIGSEGV), not just the request. Measured in a subprocess with an 8 MiB stack
# (tests/security/test_query_limits.py): ~1,550 nested NOTs, ~4,900 ANDed
# comparisons (polars re-chains a filter's conjunction at collect) and, before
# predicate_expr balanced its trees, ~890 IN values crashed. The limits sit far
# below, also for threads with smaller stacks.
MAX_IN_VALUES = 200         # values in one IN list
MAX_CONDITION_TERMS = 500   # comparisons, IN values and BETWEENs in all of a query's conditions
MAX_CONDITION_DEPTH = 16    # levels of AND, OR and NOT nested in one condition (a comparison is 1)
INT_RANGE = (-2 ** 63, 2 ** 63 - 1)  # integer literals must fit the engines' 64-bit integers
MAX_GROUP_SIZE = 10 ** 12   # largest assumed_group_size of an accuracy target (keeps it a float)
MAX_WEIGHT = 1000


def _check_scalar(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidQuery(f"{where}: expected a string or number literal")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidQuery(f"{where}: numbers must be finite")
    if isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise InvalidQuery(f"{where}: whole numbers must lie between -2^63 and 2^63-1")


def _finite(value) -> bool:
    """A real number that converts to a finite float (no bool, no 10**400, no NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


@dataclass(frozen=True)
class Compare:
    column: str
    op: str
    value: Scalar

    def __post_init__(self):
        if self.op not in COMPARISONS:
            raise InvalidQuery(f"unknown comparison {self.op!r}; use one of {', '.join(COMPARISONS)}")
        _check_scalar(self.value, f"comparison on {self.column!r}")


@dataclass(frozen=True)
class InList:
    column: str
    values: tuple
    negated: bool = False

    def __post_init__(self):
        if not self.values:
            raise InvalidQuery(f"IN list on {self.column!r} is empty")
        if len(self.values) > MAX_IN_VALUES:
            raise InvalidQuery(f"IN list on {self.column!r} has {len(self.values):,} values; the "
                               f"limit is {MAX_IN_VALUES:,}. Split the query or use BETWEEN")
        for v in self.values:
            _check_scalar(v, f"IN list on {self.column!r}")


@dataclass(frozen=True)
class Between:
    column: str
    low: Scalar
    high: Scalar
    negated: bool = False

    def __post_init__(self):
        _check_scalar(self.low, f"BETWEEN on {self.column!r}")
        _check_scalar(self.high, f"BETWEEN on {self.column!r}")


@dataclass(frozen=True)
class And:
    items: tuple


@dataclass(frozen=True)
class Or:
    items: tuple


@dataclass(frozen=True)
class Not:
    item: object


Predicate = Union[Compare, InList, Between, And, Or, Not]


def condition_size(pred) -> tuple[int, int]:
    """(terms, depth) of a condition, walked without recursion so any size is safe.

    Terms are comparisons, IN values and BETWEENs; depth counts nested AND, OR
    and NOT levels, a lone comparison being 1.
    """
    terms, depth, stack = 0, 0, [(pred, 1)]
    while stack:
        node, level = stack.pop()
        depth = max(depth, level)
        if isinstance(node, (And, Or)):
            stack.extend((p, level + 1) for p in node.items)
        elif isinstance(node, Not):
            stack.append((node.item, level + 1))
        else:
            terms += len(node.values) if isinstance(node, InList) else 1
    return terms, depth


def check_size(conditions) -> None:
    """Refuse conditions past the query-size budget (MAX_CONDITION_*), naming the limit."""
    total = 0
    for cond in conditions:
        terms, depth = condition_size(cond)
        if depth > MAX_CONDITION_DEPTH:
            raise InvalidQuery(f"a condition nests AND, OR and NOT {depth:,} levels deep; the "
                               f"limit is {MAX_CONDITION_DEPTH}. Flatten it (NOT NOT x is x; "
                               "a AND (b AND c) is a AND b AND c)")
        total += terms
    if total > MAX_CONDITION_TERMS:
        raise InvalidQuery(f"the query's conditions have {total:,} terms (comparisons, IN values "
                           f"and BETWEENs); the limit is {MAX_CONDITION_TERMS:,}. Split the query "
                           "or use BETWEEN for ranges")


def predicate_columns(pred) -> set[str]:
    """Every column a predicate reads."""
    if pred is None:
        return set()
    if isinstance(pred, (And, Or)):
        return set().union(*(predicate_columns(p) for p in pred.items))
    if isinstance(pred, Not):
        return predicate_columns(pred.item)
    return {pred.column}


@dataclass(frozen=True)
class Aggregate:
    """One released statistic per group.

    kind: count (purchases), count_customers (distinct customers), sum, avg,
    quantile (of `column` at `quantile`), purchase_rate (share of the group's
    customers with at least one purchase matching `condition`).
    """

    kind: str
    alias: str
    column: str | None = None
    quantile: float | None = None
    condition: Predicate | None = None
    weight: int = 1  # its share of the query's spend, relative to the other aggregates

    def __post_init__(self):
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) \
                or not 1 <= self.weight <= MAX_WEIGHT:
            raise InvalidQuery(f"the weight of {self.alias!r} must be a whole number from 1 "
                               f"to {MAX_WEIGHT}, e.g. 2 to give it twice the spend of the others")
        if self.kind not in AGGREGATES:
            raise InvalidQuery(f"unknown aggregate {self.kind!r}; use one of {', '.join(AGGREGATES)}")
        if self.column is None and self.kind in NEEDS_COLUMN or self.column is not None \
                and self.kind not in NEEDS_COLUMN + MAY_NAME_COLUMN:
            raise InvalidQuery(f"{self.kind.upper()} needs exactly one numeric column"
                               if self.kind in NEEDS_COLUMN else f"{self.kind} takes no column")
        if self.kind == "quantile" and not (self.quantile is not None and 0 <= self.quantile <= 1):
            raise InvalidQuery("a quantile needs a level between 0 and 1, e.g. QUANTILE(amount, 0.9)")
        if self.kind == "purchase_rate" and self.condition is None:
            raise InvalidQuery("PURCHASE_RATE needs a condition, e.g. PURCHASE_RATE(category = 'snacks')")


@dataclass(frozen=True)
class OrderBy:
    name: str
    descending: bool = False


@dataclass(frozen=True)
class Query:
    dataset: str
    aggregates: tuple[Aggregate, ...]
    group_by: tuple[str, ...] = ()
    where: Predicate | None = None
    order_by: tuple[OrderBy, ...] = ()
    limit: int | None = None
    select: tuple = ()  # outputs.Output columns in order; () = group columns, then aggregates
    having: Predicate | None = None  # on output columns, applied to the noisy rows
    derived: tuple = ()  # derived.Derived row-level columns, named by WHERE, aggregates, GROUP BY

    def __post_init__(self):
        if not self.aggregates:
            raise InvalidQuery("a query needs at least one aggregate, e.g. COUNT(*)")
        derived.check_all(self.derived)
        check_size([c for c in (self.where, self.having, *(a.condition for a in self.aggregates),
                                *(c for d in self.derived for c in derived.all_conditions(d.expr)))
                    if c is not None])
        if len(self.group_by) > 3:
            raise InvalidQuery("GROUP BY takes at most 3 columns")
        if len(set(self.group_by)) != len(self.group_by):
            raise InvalidQuery("GROUP BY names a column twice")
        names = [a.alias for a in self.aggregates] + list(self.group_by)
        if len(set(names)) != len(names):
            raise InvalidQuery("two output columns share a name; give each aggregate its own alias (AS ...)")
        if self.limit is not None and not 0 <= self.limit <= INT_RANGE[1]:
            raise InvalidQuery("LIMIT must be a whole number from 0 to 2^63-1")
        names = _check_outputs(self.select, names)
        for o in self.order_by:
            if o.name not in names:
                raise InvalidQuery(f"ORDER BY {o.name!r} is not an output column; use one of {', '.join(names)}")
        for name in sorted(predicate_columns(self.having)):
            if name not in names:
                raise InvalidQuery(f"HAVING reads {name!r}, which is not an output column; "
                                   f"use one of {', '.join(names)}")


def _check_outputs(select: tuple, names: list[str]) -> list[str]:
    """Output columns read only group columns and aggregates, and have distinct names.

    Returns every name ORDER BY and HAVING may use: outputs, then the rest."""
    if not select:
        return names
    outs = [o.name for o in select]
    if not all(isinstance(o, Output) for o in select) or len(set(outs)) != len(outs):
        raise InvalidQuery("two output columns share a name; give each its own alias (AS ...)")
    for out in select:
        for ref in refs(out.expr):
            if ref not in names:
                raise InvalidQuery(f"output column {out.name!r} reads {ref!r}, which is neither "
                                   f"a group column nor an aggregate")
    return outs + [n for n in names if n not in outs]


@dataclass(frozen=True)
class Spend:
    """A stated privacy spend: epsilon (pure DP) or rho (zCDP)."""

    epsilon: float | None = None
    rho: float | None = None

    def __post_init__(self):
        given = [v for v in (self.epsilon, self.rho) if v is not None]
        if len(given) != 1:
            raise InvalidQuery("state exactly one of epsilon or rho (or an accuracy target instead)")
        value = given[0]
        name = "epsilon" if self.epsilon is not None else "rho"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidQuery(f"{name} must be a number, e.g. 0.5")
        if not (_finite(value) and value > 0):
            shown = f"{value!r}" if isinstance(value, float) else "a number beyond float range"
            raise InvalidQuery(f"{name} must be positive and finite, got {shown}")

    @property
    def value(self) -> float:
        return self.epsilon if self.epsilon is not None else self.rho


@dataclass(frozen=True)
class AccuracyTarget:
    """Spend the least that makes `aggregate`'s interval half-width at most `within`.

    For ratios the half-width depends on the size of the group's denominator:
    customers for purchase_rate (default 1,000), purchases for avg (default
    10,000). The target is met for groups at least `assumed_group_size` large.
    `at_most` caps the spend (ε, or ρ) the partner accepts for it: a target that
    costs more is refused, free, instead of charged.
    """

    within: float
    confidence: float = 0.95
    aggregate: str | None = None
    assumed_group_size: int | None = None
    at_most: float | None = None

    def __post_init__(self):
        if not (_finite(self.within) and self.within > 0):
            raise InvalidQuery("accuracy target 'within' must be a positive number, e.g. 0.02")
        if not (_finite(self.confidence) and 0.5 <= self.confidence < 1):
            raise InvalidQuery("accuracy target 'confidence' must be a number from 0.5 to "
                               "below 1, e.g. 0.95")
        if self.aggregate is not None and not isinstance(self.aggregate, str):
            raise InvalidQuery("accuracy target 'aggregate' must be the name of one of the "
                               "query's aggregates")
        if self.at_most is not None and not (_finite(self.at_most) and self.at_most > 0):
            raise InvalidQuery("accuracy target 'at_most' must be a positive number: the most "
                               "this query may spend, e.g. 0.5")
        size = self.assumed_group_size
        if size is not None and not (isinstance(size, int) and not isinstance(size, bool)
                                     and 1 <= size <= MAX_GROUP_SIZE):
            raise InvalidQuery("'assumed_group_size' must be a whole number from 1 to "
                               f"{MAX_GROUP_SIZE:,}")


@dataclass(frozen=True)
class Request:
    """A query plus how much to spend on it, and the interval level to report."""

    query: Query
    budget: Union[Spend, AccuracyTarget]
    confidence: float = 0.95
    extras: dict = field(default_factory=dict, compare=False, hash=False)
    bounding_report: bool = False  # also estimate the share of customers truncated
    auto_bounds: bool = False  # "bounds": "auto": the row bound chosen per query (autobound.py)

    def __post_init__(self):
        if not (_finite(self.confidence) and 0.5 <= self.confidence < 1):
            raise InvalidQuery("'confidence' must be a number from 0.5 to below 1, e.g. 0.95")


def canonical(request: Request) -> str:
    """Stable text for a request: same model, same text (the cache and audit key)."""
    body = {"query": _tagged(request.query), "budget": _tagged(request.budget),
            "confidence": request.confidence}
    if request.bounding_report:
        body["bounding_report"] = True
    if request.auto_bounds:
        body["bounds"] = "auto"
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


_OMITTED_WHEN_EMPTY = ("select", "having", "derived")  # added later: older queries keep their text
_NOT_CANONICAL = ("extras", "at_most")  # at_most limits the spend, not what is released


def _tagged(node):
    if isinstance(node, tuple):
        return [_tagged(n) for n in node]
    if hasattr(node, "__dataclass_fields__"):
        fields = {k: _tagged(getattr(node, k)) for k in node.__dataclass_fields__
                  if k not in _NOT_CANONICAL and not (k == "weight" and getattr(node, k) == 1)
                  and not (k in _OMITTED_WHEN_EMPTY and getattr(node, k) in ((), None))}
        return {"node": type(node).__name__, **fields}
    return node


__all__ = ["Compare", "InList", "Between", "And", "Or", "Not", "Aggregate", "OrderBy",
           "Query", "Spend", "AccuracyTarget", "Request", "canonical", "predicate_columns",
           "asdict"]
