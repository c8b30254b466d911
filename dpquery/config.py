"""Load and validate config.toml into frozen settings.

Every key is declared once in the SPEC tables (config_spec.py: type, default, meaning); an
unknown or mistyped key stops start-up with a `ConfigError` naming the key and
what was expected. README.md documents every key (a test checks this).
"""
from __future__ import annotations

import datetime
import importlib.util
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpquery.config_spec import (BOUNDS_SPEC, COLUMN_SPEC, DATASET_SPEC, DEMO_SPEC,  # noqa: F401
                                 ENGINE_SPEC, ENGINES, LEDGER_SPEC, POLICY_SPEC, REQUIRED,
                                 SECTION_SPECS, SERVER_SPEC, SPARK_SPEC, URI_SCHEMES)
from dpquery.errors import ConfigError

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    values: tuple | None = None
    derived_from: str | None = None
    lower: float | None = None
    upper: float | None = None
    customer_total_upper: float | None = None
    quantile_candidates: tuple | None = None
    resolution: float | None = None
    groups_per_customer: int | None = None
    dates: tuple | None = None  # a date column's public (first, last) day, datetime.date

    @property
    def is_numeric(self) -> bool:
        return self.type in ("int", "float")

    @property
    def is_public_key(self) -> bool:
        return self.values is not None


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    engine: str
    description: str
    privacy_unit: str
    consent_column: str | None
    max_rows: int
    measure: str
    delta: float
    max_epsilon_per_query: float
    max_groups: int
    rows_per_customer: int
    groups_per_customer: int
    excluded_columns: tuple[str, ...]
    category_column: str | None
    excluded_categories: tuple[str, ...]
    columns: dict[str, Column] = field(default_factory=dict)
    auto_bounds: bool = False  # bounds.auto: a query may ask for its row bound to be chosen
    auto_max_rows_per_customer: int | None = None
    auto_share: float = 0.1
    example_sql: str | None = None


@dataclass(frozen=True)
class Settings:
    server: dict[str, Any]
    ledger_path: Path
    demo: dict[str, Any]
    datasets: dict[str, Dataset]
    source: Path | None = None
    engine: dict[str, Any] = field(default_factory=lambda: _section({}, ENGINE_SPEC, "engine"))
    ledger_url: str | None = None  # PostgreSQL ledger; None: the SQLite file at ledger_path

    @property
    def dataset_names(self) -> list[str]:
        return list(self.datasets)

    @property
    def prepared_dir(self) -> Path:
        """Where each dataset's filtered, typed table is kept (one file per data version)."""
        return self.ledger_path.parent / "prepared"


def load(path: str | Path) -> Settings:
    """Read and validate a config file; relative paths are relative to it."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(raw, base=path.resolve().parent, source=path)


def from_dict(raw: dict, base: Path = Path("."), source: Path | None = None) -> Settings:
    """Validate an already-parsed config (tests build one as a dict)."""
    _check_keys(raw, {"server", "ledger", "demo", "engine", "spark", "datasets"}, "top level")
    server = _section(raw.get("server", {}), SERVER_SPEC, "server")
    ledger = _section(raw.get("ledger", {}), LEDGER_SPEC, "ledger")
    demo = _section(raw.get("demo", {}), DEMO_SPEC, "demo")
    datasets = {name: _dataset(name, body, base)
                for name, body in _table(raw, "datasets").items()}
    if not datasets:
        raise ConfigError("config declares no [datasets.<name>] table; declare at least one")
    engine = _section(raw.get("engine", {}), ENGINE_SPEC, "engine")
    engine["spill_dir"] = _resolve(base, engine["spill_dir"])
    engine["spark"] = _spark(raw.get("spark", {}))  # engines read their settings from here
    _check_spark_storage(engine["spark"], datasets)
    if ledger["url"] is not None and not ledger["url"].startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"ledger.url: expected a postgresql:// URL, got {ledger['url']!r}")
    return Settings(server, _resolve(base, ledger["path"]), demo, datasets, source, engine,
                    ledger_url=ledger["url"])


def _dataset(name: str, raw: Any, base: Path) -> Dataset:
    where = f"datasets.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    top = {k: v for k, v in raw.items() if k not in ("bounds", "policy", "columns")}
    values = _section(top, DATASET_SPEC, where)
    bounds = _section(_table(raw, "bounds", where), BOUNDS_SPEC, f"{where}.bounds")
    bounds["auto_bounds"] = bounds.pop("auto")
    policy = _section(_table(raw, "policy", where), POLICY_SPEC, f"{where}.policy")
    columns = {c: _column(c, body, f"{where}.columns.{c}")
               for c, body in _table(raw, "columns", where).items()}
    ds = Dataset(
        name=name, path=_resolve(base, values.pop("path")), **values, **bounds,
        excluded_columns=tuple(policy["excluded_columns"]),
        category_column=policy["category_column"],
        excluded_categories=tuple(policy["excluded_categories"]), columns=columns)
    _check_dataset(ds, where)
    return ds


def _column(name: str, raw: Any, where: str) -> Column:
    if isinstance(raw, dict) and raw.get("type") == "date":
        return _date_column(name, raw, where)
    values = _section(raw, COLUMN_SPEC, where)
    for key in ("values", "quantile_candidates"):
        if values[key] is not None:
            values[key] = tuple(values[key])
    col = Column(name=name, **values)
    _check_column(col, where)
    return col


def _date_column(name: str, raw: dict, where: str) -> Column:
    """type = "date": public first and last days; no other keys (dates are neither summed
    nor grouped by directly: partners group by YEAR(...), MONTH(...) of them).

    The days are kept in `dates`, never in lower/upper, so no numeric code reads them."""
    _check_keys(raw, {"type", "lower", "upper"}, where)
    days = []
    for key in ("lower", "upper"):
        if key not in raw:
            raise ConfigError(f"{where}.{key} is required for a date column: its public "
                              f"{'first' if key == 'lower' else 'last'} day, e.g. "
                              f"{key} = \"{'2016-01-01' if key == 'lower' else '2025-12-31'}\"")
        days.append(_date(raw[key], f"{where}.{key}"))
    if days[0] > days[1]:
        raise ConfigError(f"{where}: lower ({days[0]}) is after upper ({days[1]})")
    return Column(name=name, type="date", dates=tuple(days))


def _date(value: Any, where: str):
    """A TOML date (2016-01-01) or an ISO string ("2016-01-01") as a datetime.date."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    day = iso_date(value) if isinstance(value, str) else None
    if day is None:
        raise ConfigError(f"{where}: expected a date written YYYY-MM-DD (a TOML date "
                          f"2016-01-01 or the string \"2016-01-01\"), got {value!r}")
    return day


def iso_date(text: str):
    """`text` as a datetime.date when it is exactly YYYY-MM-DD (a real day), else None.

    One written form only, so a date means the same on every engine (DuckDB and
    Spark would each read other forms their own way)."""
    if not isinstance(text, str) or not _ISO_DATE.fullmatch(text):
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


def _check_column(col: Column, where: str) -> None:
    if col.type not in ("string", "int", "float"):
        raise ConfigError(f"{where}.type: expected 'string', 'int', 'float' or 'date', "
                          f"got {col.type!r}")
    if col.values is not None and len(col.values) == 0:
        raise ConfigError(f"{where}.values: a public domain needs at least one value")
    if col.lower is not None or col.upper is not None:
        if col.lower is None or col.upper is None or not col.lower < col.upper:
            raise ConfigError(f"{where}: lower and upper must both be set, with lower < upper")
    if col.resolution is not None and not (col.type == "float" and col.resolution > 0
                                           and col.lower is not None):
        raise ConfigError(f"{where}.resolution needs a float column with bounds and a positive value")
    if col.groups_per_customer is not None and col.groups_per_customer < 1:
        raise ConfigError(f"{where}.groups_per_customer: expected a whole number of at least 1")
    if col.customer_total_upper is not None and col.upper is None:
        raise ConfigError(f"{where}.customer_total_upper needs lower and upper too")


def _check_dataset(ds: Dataset, where: str) -> None:
    _check_engine(ds.engine, f"{where}.engine")
    if is_uri(ds.path) and ds.engine != "spark":
        raise ConfigError(f"{where}.path is a URI ({ds.path}); only engine = \"spark\" reads "
                          "URIs. Set the engine, or use a local path")
    if ds.measure not in ("pure", "zcdp"):
        raise ConfigError(f"{where}.measure: expected 'pure' or 'zcdp', got {ds.measure!r}")
    positive = {"max_rows": ds.max_rows, "max_groups": ds.max_groups,
                "bounds.rows_per_customer": ds.rows_per_customer,
                "bounds.groups_per_customer": ds.groups_per_customer,
                "max_epsilon_per_query": ds.max_epsilon_per_query}
    for key, value in positive.items():
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{where}.{key}: expected a positive number, got {value!r}")
    if not 0 <= ds.delta < 1:
        raise ConfigError(f"{where}.delta: expected 0 <= delta < 1, got {ds.delta!r}")
    if ds.max_rows < ds.rows_per_customer:  # tests/test_opendp_guards.py
        raise ConfigError(f"{where}.max_rows ({ds.max_rows}) is below bounds.rows_per_customer "
                          f"({ds.rows_per_customer}); OpenDP would then take a group's change "
                          "from max_rows, which undercounts it (opendp/opendp#2945)")
    _check_auto_bounds(ds, where)
    if ds.privacy_unit not in ds.excluded_columns:
        raise ConfigError(f"{where}.policy.excluded_columns must include the privacy unit "
                          f"{ds.privacy_unit!r}: it can never be queried directly")


def _check_auto_bounds(ds: Dataset, where: str) -> None:
    """bounds.auto needs a public largest bound the table's max_rows covers, and a share."""
    top = ds.auto_max_rows_per_customer
    if not 0 < ds.auto_share < 1:
        raise ConfigError(f"{where}.bounds.auto_share: expected a number between 0 and 1 "
                          f"(e.g. 0.1), got {ds.auto_share!r}")
    if not ds.auto_bounds:
        return
    if top is None:
        raise ConfigError(f"{where}.bounds.auto = true needs bounds.auto_max_rows_per_customer: "
                          "the largest rows-per-customer bound a query may be given (public)")
    if not ds.rows_per_customer <= top <= ds.max_rows:
        raise ConfigError(f"{where}.bounds.auto_max_rows_per_customer: expected a whole number "
                          f"from bounds.rows_per_customer ({ds.rows_per_customer}) to max_rows "
                          f"({ds.max_rows}), got {top}")


def _check_engine(name: str, where: str) -> None:
    """An unknown engine, or one whose library is not installed, stops start-up."""
    if name not in ENGINES:
        raise ConfigError(f"{where}: unknown engine {name!r}; expected one of: {', '.join(ENGINES)}")
    module = {"duckdb": "duckdb", "spark": "pyspark"}.get(name)
    if module and importlib.util.find_spec(module) is None:
        raise ConfigError(f"{where} is {name!r} but the {module!r} package is not installed; "
                          f"pip install {module}, or set {where} = \"polars\"")


def _spark(raw: Any) -> dict:
    spark = _section(raw, SPARK_SPEC, "spark")
    for key, value in spark["conf"].items():
        if isinstance(value, (dict, list)):
            raise ConfigError(f"spark.conf.{key}: expected a string, number or boolean, got {value!r}")
    spark["conf"] = {k: str(v).lower() if isinstance(v, bool) else str(v)
                     for k, v in spark["conf"].items()}
    return spark


def _check_spark_storage(spark: dict, datasets: dict) -> None:
    """A cluster's executors cannot write this host's var/prepared: name a shared location."""
    uses_spark = any(ds.engine == "spark" for ds in datasets.values())
    if uses_spark and not spark["master"].startswith("local") and spark["prepared_dir"] is None:
        raise ConfigError(f"spark.master is {spark['master']!r}, a cluster: set spark.prepared_dir "
                          "to storage its executors write and read (e.g. "
                          "\"s3a://bucket/dpquery/prepared\"); var/prepared is only on this host")


def is_uri(path) -> bool:
    """A dataset path Spark reads itself (s3a://, hdfs://, file:...), not a local path."""
    return isinstance(path, str) and path.startswith(URI_SCHEMES)


def _section(raw: Any, spec: dict, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    _check_keys(raw, set(spec), where)
    return {key: _value(raw, key, typ, default, where)
            for key, (typ, default, _doc) in spec.items()}


def _value(raw: dict, key: str, typ: type, default: Any, where: str) -> Any:
    if key not in raw:
        if default is REQUIRED:
            raise ConfigError(f"{where}.{key} is required ({_spec_doc(where, key)})")
        return default
    value = raw[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or isinstance(value, bool) != (typ is bool):
        raise ConfigError(f"{where}.{key}: expected {typ.__name__}, got {value!r}")
    return value


def _check_keys(raw: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; "
                          f"expected one of: {', '.join(sorted(allowed))}")


def _table(raw: dict, key: str, where: str = "top level") -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key}: expected a table")
    return value


def _spec_doc(where: str, key: str) -> str:
    for spec in SECTION_SPECS.values():
        if key in spec:
            return spec[key][2]
    return ""


def _resolve(base: Path, value: str) -> Path | str:
    if value.startswith(URI_SCHEMES):
        return value  # a URI stays as written (Spark datasets only)
    path = Path(value)
    return path if path.is_absolute() else (base / path)
