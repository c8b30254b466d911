"""One OpenDP polars measurement (the reference path) and the input step before it.

OpenDP 0.16 accounts its own group truncation, `rank("dense").over(id) < t`,
as t groups, while dense ranks start at 1 and keep t − 1: keeping G groups
that way pays for G + 1, and no polars form is accounted exactly. So a part
whose customers are truncated to G groups has the truncation run here, on the
data handed to the measurement, and states it to OpenDP's map as a bound
(`Bound(by, num_groups=G)`): OpenDP then charges exactly G, as the engines do.

Stability argument for `GroupTruncation.apply` (bounding outside OpenDP): it is the
query's WHERE, a row-wise filter, then a filter that keeps a customer's rows
in the first G of its groups in key order. Each customer's kept rows depend
on that customer's rows alone, so two datasets differing in one customer's
rows give outputs differing in that customer's rows only, and in the output
that customer's rows fall in at most G groups of `by`. That is the neighbouring
relation `d_in` states: one customer differs (`per_group=1`), touching at most
G groups. The measurement's own plan then applies the WHERE again (a no-op on
filtered rows) and bounds rows per group and clamps as before. Engines keep
the identical rows (bounded.py). Tested by removing one customer in
tests/test_reference_truncation.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import opendp.prelude as dp
import polars as pl

from dpquery.engine import frames
from dpquery.engine.query import Predicate

NEIGHBOURS = [dp.polars.Bound(per_group=1)]  # neighbouring datasets differ in one customer


@dataclass(frozen=True)
class GroupTruncation:
    """Keep each customer's rows (after WHERE) in its first `groups` groups of `by`."""

    unit: str
    by: tuple[str, ...]
    groups: int
    where: Predicate | None

    def apply(self, data: pl.LazyFrame) -> pl.LazyFrame:
        return frames.truncate_groups(frames.where(data, self.where), self.unit, list(self.by),
                                      self.groups)


@dataclass(frozen=True)
class Reference:
    """An OpenDP measurement of one part, over the data after `truncation` (if any)."""

    measurement: object
    truncation: GroupTruncation | None = None

    @property
    def d_in(self) -> list:
        """The neighbouring relation of the measurement's input, as OpenDP's map reads it."""
        if self.truncation is None:
            return NEIGHBOURS
        t = self.truncation
        return [*NEIGHBOURS, dp.polars.Bound(by=list(t.by), num_groups=t.groups)]

    def map(self):
        """The privacy loss OpenDP proves (ε, ρ, or (ε, δ) with private keys)."""
        return self.measurement.map(self.d_in)

    def __call__(self, data: pl.LazyFrame):
        """Release: privacy contract as `map()` states, for datasets differing in one customer."""
        return self.measurement(self.truncation.apply(data) if self.truncation else data)


def total_loss(references: list[Reference], approximate: bool):
    """The parts' losses added exactly (basic composition, as OpenDP's make_composition
    does; the parts are released one by one): ε or ρ, or (ε, δ) when `approximate`."""
    losses = [r.map() for r in references]
    if approximate:
        return (sum((Fraction(e) for e, _d in losses), Fraction(0)),
                sum((Fraction(d) for _e, d in losses), Fraction(0)))
    return sum((Fraction(x) for x in losses), Fraction(0))
