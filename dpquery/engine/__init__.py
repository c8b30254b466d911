"""The query engine: model, parsing, policy, planning and release.

Only this package imports OpenDP and the engines' libraries (polars, DuckDB,
Spark). Nothing here knows about HTTP or the ledger.
"""
