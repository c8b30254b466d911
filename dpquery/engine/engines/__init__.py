"""Engines compute a plan part's exact bounded aggregates (bounded.Part) and nothing else.

Each engine module has `aggregate(table, part) -> polars.DataFrame`: one row
per non-empty group (the group columns, then one Int64 column per cell).
OpenDP adds the noise afterwards (noise.py); the polars engine (the OpenDP
reference's own bounded plan, run without noise) is what the others are
tested against.
"""
from __future__ import annotations

import importlib

import polars as pl

from dpquery.engine.bounded import Part

MODULES = {"polars": "dpquery.engine.engines.polars", "duckdb": "dpquery.engine.engines.duckdb",
           "spark": "dpquery.engine.engines.spark"}


def aggregate(engine: str, table, part: Part) -> pl.DataFrame:
    """The exact bounded aggregates of `part` on `table`, computed by `engine`."""
    module = importlib.import_module(MODULES[engine])
    out = module.aggregate(table, part)
    casts = [pl.col(c.name).cast(pl.Int64).fill_null(0) for c in part.cells]  # SUM of nothing is 0
    return out.with_columns(casts).select([*part.by, *[c.name for c in part.cells]])
