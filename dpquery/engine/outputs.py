"""Output columns computed from released aggregates: free post-processing.

A query's SELECT list may rename group columns (`region AS county`), hold
constants (`'all' AS scope`, `TRUE`) and arithmetic between aggregates and
constants (`SUM(amount) / COUNT(*)`, `100 * PURCHASE_RATE(...)`). These nodes
describe such columns; postprocess.py evaluates them on the noisy rows. They
read only released values, so they cost no privacy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

from dpquery.errors import InvalidQuery

OPERATORS = ("+", "-", "*", "/")
MAX_EXPRESSION_NODES = 64  # refs, constants and operators in one output column


@dataclass(frozen=True)
class Ref:
    """A group column or an aggregate, by its name in the query."""

    name: str

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise InvalidQuery("an output column must name a group column or an aggregate")


@dataclass(frozen=True)
class Const:
    """A literal: a number, a string or TRUE/FALSE."""

    value: Union[str, int, float, bool]

    def __post_init__(self):
        v = self.value
        if not isinstance(v, (str, int, float, bool)):
            raise InvalidQuery("a constant must be a number, a string, TRUE or FALSE")
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidQuery("constants must be finite numbers")


@dataclass(frozen=True)
class Arith:
    """`left op right` on numbers: aggregates (with their intervals) and constants."""

    op: str
    left: object
    right: object

    def __post_init__(self):
        if self.op not in OPERATORS:
            raise InvalidQuery(f"unknown operator {self.op!r}; use one of {', '.join(OPERATORS)}")
        if size(self) > MAX_EXPRESSION_NODES:
            raise InvalidQuery(f"an output expression has more than {MAX_EXPRESSION_NODES} "
                               "terms; split it into several columns")
        for side in (self.left, self.right):
            if isinstance(side, Const) and not _number(side.value):
                raise InvalidQuery(f"arithmetic ({self.op}) takes numbers, not "
                                   f"{'TRUE/FALSE' if isinstance(side.value, bool) else 'text'}")


Expr = Union[Ref, Const, Arith]


@dataclass(frozen=True)
class Output:
    """One column of the answer: its name and what it shows."""

    name: str
    expr: Expr

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise InvalidQuery("every output column needs a name")
        if not isinstance(self.expr, (Ref, Const, Arith)):
            raise InvalidQuery(f"output column {self.name!r} must be a column, aggregate, "
                               "constant or arithmetic on them")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def size(expr) -> int:
    """Nodes in an expression (walked without recursion)."""
    n, stack = 0, [expr]
    while stack:
        node = stack.pop()
        n += 1
        if isinstance(node, Arith):
            stack += [node.left, node.right]
    return n


def refs(expr) -> list[str]:
    """The names an expression reads."""
    out, stack = [], [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Arith):
            stack += [node.right, node.left]
        elif isinstance(node, Ref):
            out.append(node.name)
    return out
