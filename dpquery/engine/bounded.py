"""The exact, contribution-bounded aggregation of one plan part, engine-independent.

A `Part` says what an engine computes: the prepared table (see prepare.py),
bounded per customer, filtered by WHERE, grouped, aggregated into one exact
value per (group, cell). Engines (engines/duckdb.py, engines/polars.py, ...)
compute exactly this and nothing else; OpenDP adds the noise (noise.py).

Shapes:
- rows: each customer keeps the rows with `_row_rank < k` (k = rows_per_customer),
  then WHERE; cells are row counts (`len`), sums of values clamped to
  [lo, hi] minus a centre (`sum`) and sums of their squares (`sq`, for
  VARIANCE and STDDEV).
- customers: WHERE, then one row per (customer, group); a customer keeps the
  first `groups` of its groups in key order (what OpenDP's dense-rank
  truncation keeps); cells count those rows (`len`), add a per-customer 0/1 flag
  "has a row matching the condition" (`flag`) or its centred form, +1 with a
  matching row and −1 without (`sign`: 2·flags − customers, a rate's
  numerator), or add a customer's total of clamped values, itself clamped to
  [0, T] (`total`).

Sensitivity (neighbouring datasets differ in all rows of one customer), the
stability argument behind `sensitivity`:
- rows: the customer's at most k kept rows fall in at most k groups, one row
  changing one cell by at most 1 (`len`), M = max(|lo - c|, |hi - c|)
  (`sum`) or M² (`sq`: (x - c)² of a clamped x lies in [0, M²]). The changes
  add to at most k (or kM, kM²) in L1, and since they may all fall in one
  group, at most as much in L2 as well.
- customers: the customer is in at most G groups with one row each, changing
  each by at most 1 (`len`, `flag`, `sign`: its ±1 leaves with it) or T
  (`total`): L1 <= G (or GT), L2 <= sqrt(G) (or sqrt(G) T).
The OpenDP reference plan of the same part proves the same bound (its group
truncation stated as a bound on its input, reference.py); tests/test_engines.py
checks each cell's sensitivity against OpenDP's map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dpquery.engine.query import Predicate

CELL_KINDS = ("len", "sum", "sq", "flag", "sign", "total")
SHAPE_KINDS = {"rows": ("len", "sum", "sq"), "customers": ("len", "flag", "sign", "total")}


@dataclass(frozen=True)
class Cell:
    """One exact aggregate per group; `name` is the released statistic's column."""

    name: str
    kind: str
    column: str | None = None               # sum, sq, total: the (integer) column summed
    bounds: tuple[int, int] | None = None   # sum, sq, total: each row clamped to [lo, hi]
    center: int = 0                          # sum, sq: subtracted from each clamped row
    total_bounds: tuple[int, int] | None = None  # total: a customer's total clamped
    condition: Predicate | None = None       # flag, sign: the rows that set it

    def __post_init__(self):
        if self.kind not in CELL_KINDS:
            raise ValueError(f"unknown cell kind {self.kind!r}")


@dataclass(frozen=True)
class Part:
    """What one engine pass computes: bounded rows, grouped, aggregated."""

    shape: str                  # "rows" or "customers"
    unit: str                   # the privacy unit column
    by: tuple[str, ...]
    where: Predicate | None
    cells: tuple[Cell, ...]
    rows_per_customer: int      # rows: the per-customer row bound k
    groups: int | None          # customers: groups kept per customer (None: no truncation)
    max_groups: int = 1         # customers: the most groups a customer can reach

    def __post_init__(self):
        if self.shape not in SHAPE_KINDS:
            raise ValueError(f"engines compute rows and customers shapes, not {self.shape!r}")
        if any(c.kind not in SHAPE_KINDS[self.shape] for c in self.cells):  # see `sensitivity`
            raise ValueError(f"a {self.shape} part computes {', '.join(SHAPE_KINDS[self.shape])} cells")


def sensitivity(part: Part, cell: Cell, norm: str) -> float:
    """How much one customer can change `cell`'s vector over all groups (L1 or L2)."""
    if part.shape == "rows":
        return part.rows_per_customer * row_reach(cell)
    groups = part.groups if part.groups is not None else part.max_groups
    per_group = max(map(abs, cell.total_bounds)) if cell.kind == "total" else 1
    spread = groups if norm == "l1" else math.sqrt(groups)
    return spread * per_group


def row_reach(cell: Cell) -> int:
    """The most one bounded row can add to a rows-shape cell: 1, M or M² (see above)."""
    if cell.kind == "len":
        return 1
    reach = max(abs(cell.bounds[0] - cell.center), abs(cell.bounds[1] - cell.center))
    return reach * reach if cell.kind == "sq" else reach
