"""Datasets as partners see them: schema, public keys, bounds, policy.

`Table` is a dataset opened for querying: a polars LazyFrame over its files
with the consent filter and the category exclusions already applied, so no
query can ever see rows of customers who did not opt in or rows in excluded
categories. `check_query` applies the policy to a query before anything runs.
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from dpquery.config import Column, Dataset, is_uri, iso_date
from dpquery.engine import prepare, prepare_spark
from dpquery.engine.prepare import units_column
from dpquery.errors import InvalidQuery, NotFound, PolicyViolation
from dpquery.engine.query import Query, predicate_columns, Compare, InList, Between, And, Or, Not

DTYPES = {"string": pl.String, "int": pl.Int64, "float": pl.Float64, "date": pl.Date}


@dataclass(frozen=True)
class Table:
    """An opened dataset: its prepared files, a LazyFrame over them, what is public."""

    dataset: Dataset
    frame: pl.LazyFrame
    schema: dict[str, pl.DataType]
    version: str
    files: tuple[Path, ...] = ()
    engine_settings: dict = field(default_factory=dict, compare=False, hash=False)
    remote: bool = False  # prepared on cluster storage: only the engine (Spark) can read it
    derived: tuple = ()  # the query's row-level columns (derived_table.py), for SQL engines
    derived_types: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def engine(self) -> str:
        return self.dataset.engine

    def column(self, name: str) -> Column:
        return self.dataset.columns[name]


def open_table(ds: Dataset, cache_dir: Path | None = None,
               engine_settings: dict | None = None) -> Table:
    """Prepare the dataset once per data version (see prepare.py) and open it.

    The prepared parts hold only consented, non-excluded, typed rows and each
    row's keyed per-customer rank; every engine scans them. Without
    `cache_dir` they go to a temporary folder (tests, one-off use).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="dpq-"))
    settings = {"memory_limit": "2GB", "spill_dir": cache_dir / "spill", "threads": None,
                **(engine_settings or {})}
    if is_uri(ds.path):  # Spark lists the files itself (s3a://, hdfs://, file:)
        files, version = [ds.path], prepare_spark.data_version(ds.path, settings)
    else:
        files = _files(ds.path)
        version = _version(files)
    key = prepare.secret_key(cache_dir)
    name = f"{ds.name}-{version}-{prepare.recipe(ds, key)}"
    if ds.engine == "spark":  # bounded by a Spark job, where the data lives
        parts = prepare_spark.prepare(ds, files, name, cache_dir, key, settings)
    else:
        parts = prepare.prepare(ds, files, cache_dir / name, key, settings)
    remote = any(is_uri(p) for p in parts)  # prepared on cluster storage: only Spark reads it
    frame = (pl.LazyFrame(schema=_schema(ds)) if remote
             else pl.scan_parquet([str(f) for f in parts], schema=_schema(ds)))
    return Table(ds, _dates_as_text(frame, ds), _text_schema(ds), version, tuple(parts),
                 settings, remote)


def _dates_as_text(frame: pl.LazyFrame, ds: Dataset) -> pl.LazyFrame:
    """Date columns as ISO text (YYYY-MM-DD) in the reference's frame.

    OpenDP's plan and its conditions then read them as strings: a comparison
    with a date literal (kept as its ISO text in the query) orders them as
    dates, because prepare keeps every day within years 0001..9999 where ISO
    text sorts chronologically. SQL engines read the prepared DATE and compare
    it with the same literal, cast to DATE by the engine. polars computes this
    only when a query reads the column (projection pushdown)."""
    dates = [n for n, c in ds.columns.items() if c.type == "date"]
    return frame.with_columns(pl.col(n).dt.strftime("%Y-%m-%d") for n in dates) if dates \
        else frame


def _text_schema(ds: Dataset) -> dict[str, pl.DataType]:
    return {n: pl.String if t == pl.Date else t for n, t in _schema(ds).items()}


def _schema(ds: Dataset) -> dict[str, pl.DataType]:
    schema = {ds.privacy_unit: pl.Int64}
    for name, col in ds.columns.items():
        schema[name] = DTYPES[col.type]
        if col.resolution:
            schema[units_column(name)] = pl.Int64
    schema[prepare.ROW_RANK] = pl.Int64
    return schema


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
    else:
        files = [path] if path.exists() else []
    if not files:
        raise FileNotFoundError(f"no data at {path}: run `dpquery demo-data --out {path}` "
                                "or point the dataset's path at Parquet or CSV files")
    return files


def _version(files: list[Path]) -> str:
    """Changes whenever a data file is replaced (name, size, modification time)."""
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def check_engine_reach(table: Table, needs_reference: bool) -> None:
    """A table prepared on cluster storage is read by Spark only; a query part only OpenDP's
    polars computes would need its rows here, so it is refused (while planning: no charge)."""
    if table.remote and needs_reference:
        raise InvalidQuery(
            f"dataset {table.name!r} is prepared on the Spark cluster, which answers COUNT, "
            "COUNT(DISTINCT), SUM, AVG, VARIANCE and STDDEV of columns with a `resolution`, "
            "and PURCHASE_RATE, grouped by columns with public values; quantiles, sums of "
            "other columns and groups without public values are not available on it")


def queryable_columns(ds: Dataset) -> list[str]:
    return [c for c in ds.columns if c not in ds.excluded_columns]


def check_query(query: Query, tables: dict[str, Table]) -> Table:
    """Refuse anything the policy forbids, before any data is read.

    Returns the table the query runs on: with its row-level expressions added as
    columns (derived_table.py) when it has some.
    """
    from dpquery.engine import derived_table  # it reads this module's checks
    table = tables.get(query.dataset)
    if table is None:
        raise NotFound(f"unknown table {query.dataset!r}; available: {', '.join(sorted(tables))}")
    table = derived_table.extend(table, query)
    ds = table.dataset
    for name in query.group_by:
        _check_column(ds, name, "GROUP BY")
        _check_groupable(ds, ds.columns[name])
    for agg in query.aggregates:
        if agg.kind == "count" and agg.column is not None:  # COUNT(col): any column
            _check_column(ds, agg.column, "COUNT")
        elif agg.column is not None:
            _check_numeric(ds, agg.column, agg.kind.upper())
        _check_predicate(ds, agg.condition)
    _check_predicate(ds, query.where)
    _check_groups(ds, query)
    return table


def _check_groupable(ds: Dataset, col) -> None:
    """Public domains group freely; others only under private key selection (δ > 0)."""
    if col.type == "date":
        raise InvalidQuery(f"GROUP BY {col.name}: a date column has too many days to list "
                           f"as public keys; group by a part of it, e.g. YEAR({col.name}), "
                           f"MONTH({col.name}), QUARTER({col.name}) or DAYOFWEEK({col.name})")
    if col.is_public_key:
        return
    if ds.delta > 0 and col.type in ("string", "int"):
        return
    raise PolicyViolation(
        f"column {col.name!r} has no public domain, so it cannot be grouped by (its values "
        f"would leak). Group by one of: {', '.join(public_keys(ds))}; or declare its public "
        "`values` in config.toml, or opt the dataset into private key selection with `delta`")


def groups_bound(ds: Dataset, by) -> int:
    """How many groups one customer may contribute to when grouping by `by` (config only).

    The product of each column's `groups_per_customer` (default: its number of
    public values; for a column without public values, the dataset's default).
    """
    bound = 1
    for name in by:
        col = ds.columns[name]
        per = col.groups_per_customer or (len(col.values) if col.values else ds.groups_per_customer)
        bound *= per
    return bound


def key_count(ds: Dataset, by) -> int | None:
    """The number of public key combinations, or None when a column has no public values."""
    n = 1
    for name in by:
        if not ds.columns[name].values:
            return None
        n *= len(ds.columns[name].values)
    return n


def public_keys(ds: Dataset) -> list[str]:
    return [c for c in queryable_columns(ds) if ds.columns[c].is_public_key]


def _check_column(ds: Dataset, name: str, where: str) -> None:
    if name in ds.excluded_columns or name == ds.privacy_unit or name == ds.consent_column:
        raise PolicyViolation(f"column {name!r} is not queryable: excluded by policy. "
                              f"Queryable columns: {', '.join(queryable_columns(ds))}")
    if name not in ds.columns:
        raise InvalidQuery(f"unknown column {name!r} in {where}. "
                           f"Queryable columns: {', '.join(queryable_columns(ds))}")


def _check_numeric(ds: Dataset, name: str, func: str) -> None:
    _check_column(ds, name, func)
    col = ds.columns[name]
    if col.type == "date":
        raise InvalidQuery(f"{func}({name}): {name!r} is a date, and {func} needs numbers; "
                           f"use a part of it, e.g. {func}(YEAR({name})), or filter on it "
                           f"in WHERE, e.g. {name} >= DATE '2024-01-01'")
    if col.lower is None:
        numeric = [c for c in queryable_columns(ds) if ds.columns[c].lower is not None]
        raise InvalidQuery(f"{func}({name}) needs a numeric column with declared bounds; "
                           f"use one of: {', '.join(numeric) or 'none configured'}")


def _check_predicate(ds: Dataset, pred) -> None:
    for name in predicate_columns(pred):
        _check_column(ds, name, "WHERE")
    for leaf in _leaves(pred):
        _check_literals(ds, leaf)


def _leaves(pred):
    if pred is None:
        return
    if isinstance(pred, (And, Or)):
        for p in pred.items:
            yield from _leaves(p)
    elif isinstance(pred, Not):
        yield from _leaves(pred.item)
    else:
        yield pred


def _check_literals(ds: Dataset, leaf) -> None:
    col = ds.columns[leaf.column]
    values = {Compare: lambda p: [p.value], InList: lambda p: list(p.values),
              Between: lambda p: [p.low, p.high]}[type(leaf)](leaf)
    if col.type == "date":
        return _check_dates(leaf.column, values)
    for v in values:
        numeric = isinstance(v, (int, float))
        if col.type == "string" and numeric or col.is_numeric and not numeric:
            raise InvalidQuery(f"column {leaf.column!r} is {col.type}; compare it with a "
                               f"{'quoted string' if col.type == 'string' else 'number'}")
        if leaf.column == ds.category_column and v in ds.excluded_categories:
            raise PolicyViolation(f"category {v!r} is excluded by policy and never queryable "
                                  f"(excluded: {', '.join(ds.excluded_categories)})")
    if col.values is not None and not isinstance(leaf, Between):
        _check_domain(col, values)


def _check_dates(name: str, values: list) -> None:
    """A date column is compared with dates written YYYY-MM-DD (quoted or DATE '...'),
    read as that day on every engine; the value echoed is the partner's own literal."""
    for v in values:
        if iso_date(v) is None:
            raise InvalidQuery(f"column {name!r} is a date; compare it with a date written "
                               f"YYYY-MM-DD, e.g. {name} >= DATE '2024-01-01' or {name} BETWEEN "
                               f"'2024-01-01' AND '2024-03-31' (got {v!r})")


def _check_domain(col, values: list) -> None:
    """= , <> and IN name public values only: a typo would silently match no rows.

    The domain is public configuration, so listing it reveals nothing; the
    value echoed is the partner's own literal.
    """
    for v in values:
        if v not in col.values:
            near = [w for w in col.values if str(w).casefold() == str(v).casefold()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InvalidQuery(f"{v!r} is not a value of column {col.name!r}{hint}. Its public "
                               f"values are: {', '.join(map(str, col.values))}")


def _check_groups(ds: Dataset, query: Query) -> None:
    n = key_count(ds, query.group_by) or 0  # private keys: as many as pass the threshold
    if n > ds.max_groups:
        raise InvalidQuery(f"GROUP BY {', '.join(query.group_by)} makes {n} groups; the limit "
                           f"is {ds.max_groups}. Group by fewer columns or filter with WHERE")


def describe(table: Table) -> dict:
    """What a partner may know about a dataset: only configuration, never data."""
    ds = table.dataset
    cols = []
    for name in queryable_columns(ds):
        c = ds.columns[name]
        entry = {"name": name, "type": c.type}
        if c.values is not None:
            entry["values"] = list(c.values)
            entry["groups_per_customer"] = groups_bound(ds, [name])
        if c.lower is not None:
            entry["bounds"] = [c.lower, c.upper]
        if c.dates is not None:
            entry["dates"] = [d.isoformat() for d in c.dates]
        if c.customer_total_upper is not None:
            entry["customer_total_upper"] = c.customer_total_upper
        cols.append(entry)
    return {
        "name": ds.name, "description": ds.description, "privacy_unit": ds.privacy_unit,
        "measure": ds.measure, "max_epsilon_per_query": ds.max_epsilon_per_query,
        "max_groups": ds.max_groups, "columns": cols,
        "bounds": {"rows_per_customer": ds.rows_per_customer,
                   "groups_per_customer": ds.groups_per_customer,
                   "auto": ds.auto_bounds,
                   **({"auto_share": ds.auto_share} if ds.auto_bounds else {})},
        "policy": {"excluded_columns": list(ds.excluded_columns),
                   "excluded_categories": list(ds.excluded_categories),
                   "consent": f"only customers with {ds.consent_column} = true"
                   if ds.consent_column else "all rows"},
        "data_version": table.version,
        **({"example_sql": ds.example_sql} if ds.example_sql else {}),
    }
