"""Every config.toml key, declared once: (type, default, meaning) per section.

config.py loads and checks settings against these tables; README.md documents
every key (tests/test_config.py checks that it does).
"""
from __future__ import annotations

REQUIRED = object()

# key: (type, default, meaning)
SERVER_SPEC = {
    "host": (str, "127.0.0.1", "address gunicorn binds to"),
    "port": (int, 8000, "TCP port"),
    "workers": (int, 3, "gunicorn worker processes"),
    "max_body_bytes": (int, 65536, "larger request bodies are refused (413)"),
    "max_sql_chars": (int, 5000, "longer SQL text is refused (400)"),
    "rate_limit_per_minute": (int, 600, "requests per API key per minute (429 above)"),
    "query_timeout_seconds": (float, 60.0, "longest a query may run"),
    "secure_cookies": (bool, False, "web session cookies only over HTTPS (true behind TLS)"),
    "login_failures_per_key": (int, 5, "failed web sign-ins per key id before a lockout"),
    "login_failures_per_ip": (int, 20, "failed web sign-ins per client address before a lockout"),
    "login_lockout_seconds": (int, 900, "how long failed sign-ins count and a lockout lasts"),
}
LEDGER_SPEC = {
    "path": (str, "var/ledger.db", "SQLite ledger file; its folder is the var directory "
             "(ledger-id, prepared tables) also when `url` is set"),
    "url": (str, None, "PostgreSQL ledger shared by several hosts, postgresql://user@host/db "
            "(psycopg 3; password from PGPASSWORD or ~/.pgpass); unset: the SQLite `path`"),
}
DEMO_SPEC = {
    "customers": (int, 20000, "customers in the demo data made on first start"),
    "seed": (int, 7, "seed of the deterministic demo data"),
    "dataset": (str, "purchases", "the one dataset `dpquery serve --demo` may write demo data "
                "for (only under the ledger's folder, demo/)"),
}
ENGINE_SPEC = {
    "memory_limit": (str, "4GB", "DuckDB memory limit (prepare pass and the duckdb engine)"),
    "spill_dir": (str, "var/spill", "where DuckDB spills what exceeds memory_limit"),
    "threads": (int, 0, "DuckDB threads; 0 uses every core"),
}
SPARK_SPEC = {
    "master": (str, "local[2]", "Spark master (local[N], spark://, yarn, k8s://) or a Spark "
               "Connect URL sc://host:port"),
    "app_name": (str, "dpquery", "application name shown in the Spark UI"),
    "conf": (dict, {}, "extra Spark configuration, e.g. {\"spark.driver.memory\" = \"2g\"}"),
    "prepared_dir": (str, None, "where Spark writes prepared tables (a URI the cluster reads, "
                     "e.g. s3a://bucket/dpquery/prepared); unset: the var/prepared folder"),
}
ENGINES = ("polars", "duckdb", "spark")
URI_SCHEMES = ("s3a://", "s3://", "hdfs://", "abfss://", "gs://", "file:")
DATASET_SPEC = {
    "path": (str, REQUIRED, "Parquet file, folder of Parquet files, or CSV file"),
    "engine": (str, "duckdb", "'duckdb' (bounded aggregation out of core, OpenDP noise), "
               "'polars' (the OpenDP reference: release inside OpenDP's polars, in memory) "
               "or 'spark' (bounded aggregation on a Spark cluster, OpenDP noise)"),
    "description": (str, "", "one line shown to partners"),
    "example_sql": (str, None, "a starter query shown to partners (web console, the demo's "
                    "first-start banner); unset: one is made from the public columns"),
    "privacy_unit": (str, REQUIRED, "column identifying the protected person"),
    "consent_column": (str, None, "boolean column; only rows where it is true are read"),
    "max_rows": (int, REQUIRED, "public upper bound on the table's row count"),
    "measure": (str, "pure", "'pure' (epsilon, Laplace) or 'zcdp' (rho, Gaussian)"),
    "delta": (float, 0.0, "delta for private key selection; 0 disables it"),
    "max_epsilon_per_query": (float, 1.0, "largest spend one query may ask for"),
    "max_groups": (int, 5000, "largest number of output rows of one query"),
}
BOUNDS_SPEC = {
    "rows_per_customer": (int, REQUIRED, "rows one customer may contribute to a query"),
    "groups_per_customer": (int, REQUIRED, "default per-column bound for columns without "
                            "public values (private key selection)"),
    "auto": (bool, False, "queries may ask for \"bounds\": \"auto\": the rows-per-customer "
             "bound chosen per query from a private histogram (engine/autobound.py)"),
    "auto_max_rows_per_customer": (int, None, "public largest bound `auto` may choose "
                                   "(required with auto = true)"),
    "auto_share": (float, 0.1, "share of an auto query's spend that chooses its bound"),
}
POLICY_SPEC = {
    "excluded_columns": (list, [], "columns that can never be queried"),
    "category_column": (str, None, "column whose excluded values are removed"),
    "excluded_categories": (list, [], "values of category_column removed before any query"),
}
COLUMN_SPEC = {
    "type": (str, REQUIRED, "'string', 'int', 'float' or 'date'"),
    "values": (list, None, "public domain: every value appears in every answer"),
    "derived_from": (str, None, "date column this column is the year of"),
    "lower": (float, None, "numeric clamp lower bound (a date column: its first day, "
              "2016-01-01 or \"2016-01-01\")"),
    "upper": (float, None, "numeric clamp upper bound (per row; a date column: its last day)"),
    "customer_total_upper": (float, None, "clamp for one customer's total within a group"),
    "quantile_candidates": (list, None, "candidate answers for quantiles/medians"),
    "resolution": (float, None, "sums count whole multiples of this (0.01 = cents): exact "
                   "integer sums with no float-rounding margin in the noise"),
    "groups_per_customer": (int, None, "values of this column one customer may contribute "
                            "to in a query (default: all its public values)"),
}
SECTION_SPECS = {
    "server": SERVER_SPEC, "ledger": LEDGER_SPEC, "demo": DEMO_SPEC, "engine": ENGINE_SPEC,
    "spark": SPARK_SPEC,
    "datasets.<name>": DATASET_SPEC, "datasets.<name>.bounds": BOUNDS_SPEC,
    "datasets.<name>.policy": POLICY_SPEC, "datasets.<name>.columns.<column>": COLUMN_SPEC,
}
