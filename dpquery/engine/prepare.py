"""Bound once per data version: the prepared table every engine scans.

Each dataset's files are read once per data version (DuckDB, out of core,
bounded memory) into a folder of Parquet parts holding only what queries may
read: consent-filtered, excluded categories removed, declared columns typed,
integer units for columns with a `resolution`, and one more column,
`_row_rank`: each row's rank among its customer's rows in a keyed order.

A query's row bound is then a filter, `_row_rank < rows_per_customer`, not a
window over every customer.

Stability argument (neighbouring datasets differ in all rows of one customer):
`_row_rank` orders a customer's rows by a keyed hash of the customer id and
the row's own values, ties broken by those values. It is therefore a function
of that customer's rows and the secret key only: adding or removing customer c
leaves every other customer's rows and ranks unchanged, and each customer's
ranks are exactly 0 .. n_c - 1. Keeping `_row_rank < k` keeps at most k rows of
every customer (truncation before the query's WHERE). The OpenDP reference
plan expresses the same filter as a per-customer enumeration OpenDP recognises
(`frames.truncate_rows`), so OpenDP's own analysis proves the bound there;
tests/test_engines.py checks every engine keeps the identical rows.

The prepare pass streams: rows are first split into customer buckets on disk,
then ranked one bucket at a time under DuckDB's memory limit.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

import duckdb
from sqlglot import exp

from dpquery.config import Dataset
from dpquery.errors import ConfigError

ROW_RANK = "_row_rank"
SQL_TYPES = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "date": "DATE"}
DAYS = ("0001-01-01", "9999-12-31")  # every engine's DATE holds these; ISO text orders as dates
ROWS_PER_BUCKET = 25_000_000  # ranked in memory at once (DuckDB spills beyond its limit)


def units_column(name: str) -> str:
    """The hidden integer column holding `name` in whole multiples of its resolution."""
    return f"{name}__units"


def secret_key(folder: Path) -> str:
    """The installation's bounding key (made once, mode 600): which rows a bound keeps."""
    path = folder / "bounding.key"
    folder.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
    return path.read_text().strip()


def recipe(ds: Dataset, key: str) -> str:
    """Changes whenever the configuration (or key) that shapes the prepared table changes."""
    parts = [ds.privacy_unit, ds.consent_column, ds.category_column, ds.excluded_categories,
             sorted((n, c.type, c.derived_from, c.resolution) for n, c in ds.columns.items()),
             hashlib.sha256(key.encode()).hexdigest(), "rank-v1"]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def prepare(ds: Dataset, files: list[Path], out: Path, key: str, settings: dict,
            progress: bool | None = None) -> list[Path]:
    """Write the prepared parts to `out` (once; other processes wait) and return them."""
    done = out / "_SUCCESS"
    if done.exists():
        return sorted(out.glob("part-*.parquet"))
    import fcntl
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other workers wait for the first to finish
        if not done.exists():
            _build(ds, files, out, key, settings, _Progress(ds.name, progress))
    return sorted(out.glob("part-*.parquet"))


def _build(ds: Dataset, files: list[Path], out: Path, key: str, settings: dict, bar) -> None:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "parts").mkdir(parents=True)
    con = connect(settings)
    try:
        _stage_and_rank(con, ds, files, tmp, key, bar)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed pass leaves no staged copy behind
        raise
    finally:
        con.close()
    shutil.rmtree(tmp / "stage", ignore_errors=True)
    (tmp / "parts" / "_SUCCESS").touch()
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp / "parts", out)
    shutil.rmtree(tmp, ignore_errors=True)
    bar.finish()


def _stage_and_rank(con, ds: Dataset, files: list[Path], tmp: Path, key: str, bar) -> None:
    source = _source(files)
    buckets = max(1, -(-_count(con, source) // ROWS_PER_BUCKET))
    bar.step(0, buckets + 1)
    _stage(con, ds, source, tmp / "stage", key, buckets)
    rows = _count(con, exp.func("read_parquet", exp.Literal.string(f"{tmp}/stage/**/*.parquet")))
    _check_max_rows(ds, rows)
    for b in range(buckets):
        bar.step(b + 1, buckets + 1, rows)
        _rank_bucket(con, ds, tmp, b)


def _count(con, source: exp.Expression) -> int:
    """Rows in a source (Parquet: read from the files' metadata)."""
    return con.execute(exp.select("count(*)").from_(source).sql("duckdb")).fetchone()[0]


def connect(settings: dict) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection under the configured memory limit, spilling to spill_dir."""
    con = duckdb.connect(config={"memory_limit": settings["memory_limit"],
                                 "temp_directory": str(settings["spill_dir"]),
                                 "preserve_insertion_order": False})
    if settings.get("threads"):
        con.execute(f"SET threads = {int(settings['threads'])}")
    return con


def _stage(con, ds: Dataset, source: exp.Expression, stage: Path, key: str, buckets: int) -> None:
    """Filtered, typed rows with a keyed row hash, split on disk into customer buckets."""
    select = _typed_columns(ds) + [
        exp.alias_(exp.func("hash", exp.Literal.string(key), _col(ds.privacy_unit),
                            *[_col(c) for c in _raw_columns(ds)]), "_h"),
        exp.alias_(exp.Mod(this=exp.func("hash", exp.Literal.string(key), _col(ds.privacy_unit)),
                           expression=exp.Literal.number(buckets)), "_bucket")]
    query = exp.select(*select).from_(source).where(_row_filter(ds))
    con.execute(f"COPY ({query.sql('duckdb')}) TO '{_path_literal(stage)}' "
                "(FORMAT parquet, PARTITION_BY (_bucket))")


def _rank_bucket(con, ds: Dataset, tmp: Path, b: int) -> None:
    """Rank one bucket's customers' rows and write them as one part."""
    cols = [_col(n) for n in _output_columns(ds)]
    order = [exp.column("_h"), *cols]
    window = exp.Window(this=exp.RowNumber(), partition_by=[_col(ds.privacy_unit)],
                        order=exp.Order(expressions=[exp.Ordered(this=o) for o in order]))
    ranked = exp.Sub(this=window, expression=exp.Literal.number(1))
    files = tmp / "stage" / f"_bucket={b}"
    if not files.exists():  # no customer hashed into this bucket
        return
    stage = exp.func("read_parquet", exp.Literal.string(f"{files}/*.parquet"))
    query = exp.select(*cols, exp.alias_(ranked, ROW_RANK)).from_(stage)
    target = tmp / "parts" / f"part-{b:05d}.parquet"
    con.execute(f"COPY ({query.sql('duckdb')}) TO '{_path_literal(target)}' (FORMAT parquet)")


def _source(files: list[Path]) -> exp.Expression:
    names = exp.Array(expressions=[exp.Literal.string(str(f)) for f in files])
    if len(files) == 1 and files[0].suffix.lower() == ".csv":
        return exp.func("read_csv_auto", exp.Literal.string(str(files[0])))
    return exp.func("read_parquet", names)


def _typed_columns(ds: Dataset) -> list[exp.Expression]:
    out = [exp.alias_(exp.cast(_col(ds.privacy_unit), "BIGINT"), ds.privacy_unit, quoted=True)]
    for name, col in ds.columns.items():
        source = exp.func("year", _col(col.derived_from)) if col.derived_from else _col(name)
        typed = exp.cast(source, SQL_TYPES[col.type])
        if col.type == "date":
            typed = _within_days(typed)
        out.append(exp.alias_(typed, name, quoted=True))
        if col.resolution:
            out.append(exp.alias_(_units(name, col), units_column(name), quoted=True))
    return out


def _within_days(day: exp.Expression) -> exp.Expression:
    """A date kept within years 0001..9999 (a later or earlier day becomes the nearest end).

    DuckDB holds days outside that range and Spark does not; within it, every
    engine's DATE and the reference's ISO text (catalog.open_table) order the
    same way, so a comparison with a date literal keeps the same rows
    everywhere. Date parts clamp to the column's configured days anyway."""
    lo, hi = (exp.cast(exp.Literal.string(d), "DATE") for d in DAYS)
    return exp.func("least", exp.func("greatest", day, lo), hi)


def _units(name: str, col) -> exp.Expression:
    """The value in whole multiples of its resolution, clamped to the column's bounds first.

    Sums clamp to the bounds anyway, so clamping here changes no answer; it keeps
    a NaN (read as the lower bound), an infinity or a huge value in the data from
    failing the cast to BIGINT and with it the whole prepare step.
    """
    value = exp.cast(_col(name), "DOUBLE")
    lo, hi = exp.Literal.number(repr(float(col.lower))), exp.Literal.number(repr(float(col.upper)))
    clamped = exp.Case(ifs=[exp.If(this=exp.func("isnan", value), true=lo)],
                       default=exp.func("least", exp.func("greatest", value, lo), hi))
    scaled = exp.Div(this=clamped, expression=exp.Literal.number(repr(col.resolution)))
    return exp.cast(exp.func("round", scaled), "BIGINT")


def _raw_columns(ds: Dataset) -> list[str]:
    """Each source column once (a date column and the year derived from it read one)."""
    return list(dict.fromkeys(c.derived_from or n for n, c in ds.columns.items()))


def _output_columns(ds: Dataset) -> list[str]:
    names = [ds.privacy_unit]
    for name, col in ds.columns.items():
        names.append(name)
        if col.resolution:
            names.append(units_column(name))
    return names


def _row_filter(ds: Dataset) -> exp.Expression:
    """Consent, excluded categories, and no missing value in a declared column."""
    conds = [exp.Not(this=exp.Is(this=_col(c.derived_from or n), expression=exp.Null()))
             for n, c in ds.columns.items()]
    conds.append(exp.Not(this=exp.Is(this=_col(ds.privacy_unit), expression=exp.Null())))
    if ds.consent_column:
        conds.append(exp.func("coalesce", _col(ds.consent_column), exp.false()))
    if ds.category_column and ds.excluded_categories:
        excluded = [exp.Literal.string(v) for v in ds.excluded_categories]
        conds.append(exp.Not(this=exp.In(this=_col(ds.category_column), expressions=excluded)))
    return exp.and_(*conds)


def _check_max_rows(ds: Dataset, rows: int) -> None:
    """max_rows is a public bound OpenDP's float sums rely on: the data must respect it."""
    if rows > ds.max_rows:
        raise ConfigError(f"datasets.{ds.name}.max_rows is {ds.max_rows:,} but the prepared "
                          "table is larger; raise max_rows to a public bound above the "
                          "table's size")


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _path_literal(path: Path) -> str:
    return str(path).replace("'", "''")


class _Progress:
    """A progress line on stderr when it is a terminal (or when asked); silent otherwise."""

    def __init__(self, name: str, enabled: bool | None):
        self.name, self.start = name, time.monotonic()
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def step(self, done: int, total: int, rows: int | None = None) -> None:
        if self.enabled:
            width = 30
            filled = width * done // total
            print(f"\rpreparing {self.name}: [{'#' * filled}{'.' * (width - filled)}] "
                  f"{done}/{total} passes{f', {rows:,} rows' if rows is not None else ''}, "
                  f"{time.monotonic() - self.start:.0f}s",
                  end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)
