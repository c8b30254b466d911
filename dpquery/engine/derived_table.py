"""A query's derived columns added to an opened table, as ordinary public columns.

`extend(table, query)` checks each derived column against the policy (it may
read only queryable columns, never the privacy unit, the consent column or an
excluded one; its literals pass the same checks as WHERE's), proves its type,
bounds and public values from configuration (derived_bounds.py), and returns
the table with one more configured `Column` per derived column, its polars
frame computing them row by row (derived_compile.py) and the definitions for
SQL engines. From there the planner and the engines see ordinary columns.

Stability (see derived.py): each derived column is a deterministic function of
its own row that leaves the privacy unit alone, so the extended table of two
datasets differing in one customer's rows differs in that customer's rows
only; bounding, clamping and OpenDP's release follow unchanged. Tested in
tests/test_derived_engines.py by removing one customer.

OpenDP's reference plan sees the derived columns as input columns: the plan is
built over the extended schema (its input domain lists them, plan._domain), and
the measurement evaluates that plan over the logical plan of the frame it is
given (`make_private_lazyframe`: `f_lp.eval(&arg.logical_plan)`), here the
prepared parts followed by `with_columns`. So the with_columns runs before
OpenDP's truncation and clamping, outside the plan OpenDP analyses, which is
what the stability argument above covers (and it avoids upstream bug #2949, a
column redefined after truncation keeping its bound).

Every refusal happens here, while checking the query: before any data is read
and before any spend.
"""
from __future__ import annotations

import dataclasses
import math

from dpquery.config import Column
from dpquery.engine import catalog
from dpquery.engine import derived_bounds, derived_compile
from dpquery.engine.derived import (Col, DatePart, Derived, all_conditions, children,
                                    columns as expr_columns)
from dpquery.engine.prepare import units_column
from dpquery.errors import InvalidQuery, PolicyViolation


def extend(table, query):
    """`table` with the query's derived columns (the table itself when there are none)."""
    if not query.derived:
        return table
    ds = table.dataset
    cols, infos = dict(ds.columns), {}
    for d in query.derived:
        _check_name(ds, d.name)
        _check_reads(ds, cols, infos, d)
        info = derived_bounds.analyse(d.expr, lambda n: _info(cols, infos, n))
        if info.type == "date":
            raise InvalidQuery(f"the expression {d.name!r} is a date column itself; "
                               f"{derived_bounds.DATE_HINT}")
        infos[d.name] = info
        if d.name in query.group_by:
            _check_groupable(ds, d.name, info)
        cols[d.name] = _column(ds, cols, d, info)
        for cond in all_conditions(d.expr):
            catalog._check_predicate(dataclasses.replace(ds, columns=cols), cond)
    added, types = _materialised(query.derived, infos, cols)
    schema = {**table.schema, **{d.name: derived_compile.DTYPES[types[d.name]] for d in added}}
    frame = derived_compile.polars_frame(table.frame, added, ds.columns, types)
    return dataclasses.replace(table, dataset=dataclasses.replace(ds, columns=cols), frame=frame,
                               schema=schema, derived=added, derived_types=types)


def _materialised(derived: tuple, infos: dict, cols: dict) -> tuple[tuple, dict]:
    """The columns to compute on each row: every derived column, then the hidden integer
    units column sums read (mechanisms.summable) for those with a `resolution`."""
    added, types = list(derived), {d.name: infos[d.name].type for d in derived}
    for d in derived:
        units = _units_expr(d, cols[d.name])
        if units is not None:
            added.append(Derived(units_column(d.name), units))
            types[units_column(d.name)] = "int"
    return tuple(added), types


def _units_expr(d, col: Column):
    """Whole numbers: the value itself. A selection of a column with a resolution (CASE
    WHEN ... THEN amount ELSE 0 END): the same selection of that column's units."""
    if col.resolution is None:
        return None
    if col.type == "int":
        return Col(d.name)
    return derived_bounds.replace_column(d.expr, Col(units_column(derived_bounds.selected(d.expr))))


def _check_name(ds, name: str) -> None:
    taken = [ds.privacy_unit, ds.consent_column, *ds.columns, *ds.excluded_columns]
    if any(t and t.casefold() == name.casefold() for t in taken):
        raise InvalidQuery(f"the expression named {name!r} has the name of a column of the "
                           "dataset; give it another alias (AS ...)")


def _check_reads(ds, cols: dict, infos: dict, d) -> None:
    """Queryable configured columns, or derived columns defined before this one."""
    for name in sorted(expr_columns(d.expr)):
        if name in infos:
            continue
        if name == ds.privacy_unit or name == ds.consent_column or name in ds.excluded_columns:
            raise PolicyViolation(f"column {name!r} is not queryable: excluded by policy. "
                                  f"Queryable columns: {', '.join(catalog.queryable_columns(ds))}")
        if name not in ds.columns:
            raise InvalidQuery(f"unknown column {name!r} in an expression. Queryable columns: "
                               f"{', '.join(catalog.queryable_columns(ds))}")


def _info(cols: dict, infos: dict, name: str) -> derived_bounds.Info:
    return infos[name] if name in infos else derived_bounds.column_info(cols[name])


def _check_groupable(ds, name: str, info) -> None:
    """GROUP BY an expression: whole numbers or text with a public list of values."""
    if info.type == "float":
        raise InvalidQuery(f"GROUP BY {name!r}: its values are fractional numbers, which have "
                           "no public list; group by whole numbers instead, e.g. "
                           "FLOOR(amount / 10) * 10 or ROUND(x)")
    if info.domain is None:
        raise InvalidQuery(f"GROUP BY {name!r}: its values cannot be listed from the "
                           "configuration (it reads a column without public values or "
                           "bounds); group by a CASE whose THEN and ELSE are literals, or by "
                           "FLOOR/ROUND of a bounded column, e.g. FLOOR(amount / 10) * 10")
    if len(info.domain) > ds.max_groups:
        raise InvalidQuery(f"GROUP BY {name!r} makes {len(info.domain):,} groups; the limit is "
                           f"{ds.max_groups:,}. Use wider buckets, e.g. FLOOR(x / 50) * 50, "
                           "or a CASE with fewer branches")


def _column(ds, cols: dict, d, info) -> Column:
    """The derived column as configuration: public values, clamp bounds, groups per customer.

    A selection of one column (every value is that column or 0, e.g. CASE WHEN ...
    THEN amount ELSE 0 END) keeps the column's `resolution` (exact integer sums)
    and, for a column that is never negative, its `customer_total_upper`: each
    row's value lies between 0 and the column's, so a customer's total does too.
    That clamp is applied by the aggregation (like every bound here), so it
    shapes accuracy only.
    """
    listed = info.domain is not None and len(info.domain) <= ds.max_groups and \
        info.type != "float"
    lo, hi = info.bounds if info.bounds is not None else (None, None)
    source = cols.get(derived_bounds.selected(d.expr) or "")
    resolution = 1.0 if info.type == "int" else None
    total = None
    if source is not None and source.is_numeric and source.lower is not None:
        resolution = source.resolution or resolution
        total = source.customer_total_upper if source.lower >= 0 else None
    return Column(d.name, info.type, values=tuple(info.domain) if listed else None,
                  lower=lo, upper=hi, resolution=resolution, customer_total_upper=total,
                  groups_per_customer=_groups_per_customer(ds, cols, d, info) if listed else None)


def _groups_per_customer(ds, cols: dict, d, info) -> int | None:
    """A customer takes at most as many values as it has combinations of the inputs' values.

    Only an accuracy matter: the group bound is enforced by truncation when
    grouping, so a customer with more values keeps its first ones.
    """
    inputs = sorted(expr_columns(d.expr))
    if not inputs or not all(cols[n].values for n in inputs):
        return None
    bound = math.prod(catalog.groups_bound(dataclasses.replace(ds, columns=cols), [n])
                      for n in inputs)
    return bound if bound < len(info.domain) else None


def notes(query) -> list[str]:
    """What an answer with row-level expressions should say (from the query alone)."""
    if not query.derived:
        return []
    shown = ", ".join(d.name for d in query.derived)
    return [f"Row-level expressions ({shown}) are computed on each row before the "
            "contribution bounds; the numeric columns they compute with enter clamped to "
            "their configured bounds, and their own bounds and values come from "
            "configuration. Rows with a null in a declared column were dropped when the "
            "dataset was prepared, so no row is dropped for nulls here and COALESCE keeps "
            "its first argument." + _dates_note(query)]


def _dates_note(query) -> str:
    parts = {n.part for d in query.derived for n in _nodes(d.expr) if isinstance(n, DatePart)}
    if not parts:
        return ""
    dow = " Days of the week are ISO 8601: 1 = Monday .. 7 = Sunday." if "DOW" in parts else ""
    return (" Date parts read each day clamped to the column's configured first and last "
            "day." + dow)


def _nodes(expr):
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(children(node))
