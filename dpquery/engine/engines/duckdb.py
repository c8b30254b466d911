"""DuckDB: the bounded aggregation out of core, over the prepared Parquet parts.

One connection per process (made lazily, again after a fork), under the
configured memory limit, spilling to spill_dir; a cursor per query.
"""
from __future__ import annotations

import os

import polars as pl
from sqlglot import exp

from dpquery import deadline
from dpquery.engine import prepare
from dpquery.engine.bounded import Part
from dpquery.engine.derived_compile import table_source  # the query's row-level columns
from dpquery.engine.engines.sqlplan import compile_part

_connections: dict = {}


def aggregate(table, part: Part) -> pl.DataFrame:
    return run_select(table, lambda source: compile_part(part, source))


def run_select(table, build, schema: dict | None = None) -> pl.DataFrame:
    """Run `build(source)`, a sqlglot SELECT over the prepared parts (also autobound.py's),
    its columns cast to `schema` when given."""
    files = exp.Array(expressions=[exp.Literal.string(str(f)) for f in table.files])
    sql = build(table_source(table, exp.func("read_parquet", files))).sql("duckdb")
    cursor = _connection(table.engine_settings).cursor()
    try:
        with deadline.cancellable(cursor.interrupt):  # an overrun query is interrupted
            out = pl.from_arrow(cursor.sql(sql).to_arrow_table())
        return out.cast(schema) if schema else out
    finally:
        cursor.close()


def _connection(settings: dict):
    key = (os.getpid(), settings["memory_limit"], str(settings["spill_dir"]), settings.get("threads"))
    con = _connections.get(key)
    if con is None:
        _connections.clear()  # a forked child never uses its parent's connection
        con = _connections[key] = prepare.connect(settings)
    return con
