"""Spark: the bounded aggregation runs on the cluster; only the aggregate vector comes back.

The plan part is compiled to the same sqlglot tree as DuckDB's
(engines/sqlplan.py) and printed in the Spark dialect over a temporary view of
the prepared Parquet parts. Spark scans, bounds, groups and aggregates where
the data lives; the driver collects one row per non-empty group (at most
`max_groups` integers per cell), never a row of the table. OpenDP adds the
noise in the service (noise.py).

One SparkSession per worker process, made on first use (never per query):
`local[N]`, a cluster master (spark://, yarn, k8s://), or a Spark Connect URL
(`sc://host:port`, needs `pyspark[connect]`) from `[spark] master`.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import uuid

import polars as pl
from sqlglot import exp

from dpquery import deadline
from dpquery.engine.bounded import Part
from dpquery.engine.derived_compile import table_source  # the query's row-level columns
from dpquery.engine.engines.sqlplan import compile_part
from dpquery.errors import ConfigError

DEFAULTS = {"master": "local[2]", "app_name": "dpquery", "conf": {}, "prepared_dir": None}
LOCAL_CONF = {  # local mode on one machine: loopback only, few shuffle partitions, quiet
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",  # the UI binds every interface: opt in with spark.conf
    # the prepared parts are read as external bucketed tables; keep the catalog's folder
    # out of the working directory
    "spark.sql.warehouse.dir": os.path.join(tempfile.gettempdir(), "dpquery-spark-warehouse"),
}
_sessions: dict = {}  # pid -> SparkSession: a forked child never uses its parent's
_views: dict = {}     # (pid, files) -> temporary view or bucketed table name
PREPARED_MARKER = "_dpquery_done"  # the Spark prepare's marker (prepare_spark.py): Spark's
                                   # readers skip "_" names in the parts' folder


def aggregate(table, part: Part) -> pl.DataFrame:
    """The exact bounded aggregates of `part`, computed by Spark; one row per non-empty group."""
    schema = {**{b: table.schema[b] for b in part.by}, **{c.name: pl.Int64 for c in part.cells}}
    return run_select(table, lambda source: compile_part(part, source), schema)


def run_select(table, build, schema: dict) -> pl.DataFrame:
    """Run `build(source)`, a sqlglot SELECT over the prepared parts' view, on the cluster;
    the driver receives only its (aggregate) rows, typed by `schema`."""
    spark = session(table.engine_settings)
    sql = build(table_source(table, exp.to_table(_view(spark, table.files)))).sql("spark")
    tag = f"dpquery-{uuid.uuid4().hex}"
    spark.addTag(tag)
    try:
        with deadline.cancellable(lambda: spark.interruptTag(tag)):  # an overrun job is cancelled
            rows = spark.sql(sql).collect()  # the only data the driver receives: aggregates
    finally:
        spark.removeTag(tag)
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


def settings_of(engine_settings: dict | None) -> dict:
    """The `[spark]` settings (config.py puts them under the engine settings' "spark")."""
    return {**DEFAULTS, **((engine_settings or {}).get("spark") or {})}


def session(engine_settings: dict | None):
    """This process's SparkSession, made once; a clear ConfigError when Spark cannot start."""
    spark = _sessions.get(os.getpid())
    if spark is None:
        _sessions.clear()
        _views.clear()
        spark = _sessions[os.getpid()] = _start(settings_of(engine_settings))
        atexit.register(_stop, os.getpid())
    return spark


def _start(settings: dict):
    master = settings["master"]
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("engine = \"spark\" needs pyspark: pip install 'pyspark>=4,<5'") from None
    builder = SparkSession.builder.appName(settings["app_name"])
    if master.startswith("sc://"):
        builder = builder.remote(master)
        conf = settings["conf"]
    else:
        _check_java(master)
        builder = builder.master(master)
        conf = {**(LOCAL_CONF if master.startswith("local") else {}), **settings["conf"]}
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except ImportError as exc:  # Spark Connect's client libraries
        raise ConfigError(f"spark.master is {master!r} (Spark Connect), which needs "
                          f"pip install 'pyspark[connect]>=4,<5' ({exc})") from None
    except Exception as exc:  # the JVM did not start, or the cluster refused us
        raise ConfigError(f"could not start Spark with spark.master = {master!r}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
                          "Check spark.master and spark.conf, and that a Java 17+ runtime is "
                          "installed (java on PATH or JAVA_HOME)") from None
    if not master.startswith("sc://"):
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _check_java(master: str) -> None:
    """A classic (non-Connect) session starts a JVM here: say so before pyspark fails obscurely."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    raise ConfigError(f"spark.master is {master!r}, which starts a Java VM in this process, but "
                      "no Java runtime was found (no java on PATH, JAVA_HOME unset). Install "
                      "one (apt-get install openjdk-17-jre-headless), or set spark.master to a "
                      "Spark Connect URL sc://host:port")


def _view(spark, files) -> str:
    """A view over the prepared parts (made once per process and table): a bucketed table
    when the Spark prepare wrote them bucketed by customer, else a temporary view."""
    paths = tuple(str(f) for f in files)
    key = (os.getpid(), paths)
    name = _views.get(key)
    if name is None:
        name = "dpq_" + hashlib.sha256("\0".join(paths).encode()).hexdigest()[:16]
        frame = spark.read.parquet(*paths)
        layout = _bucketing(spark, paths)
        if layout is None:
            frame.createOrReplaceTempView(name)
        else:
            spark.sql(_bucketed_table_sql(name, frame.schema, _folder(paths), *layout))
        _views[key] = name
    return name


def _bucketing(spark, paths: tuple) -> tuple[str, int] | None:
    """(unit, buckets) when the parts are one folder the Spark prepare wrote bucketed by the
    privacy unit (its marker says so, prepare_spark.py); None for other parts (DuckDB's).

    Read as a bucketed table, a customer's rows are known to sit in one bucket: the
    customers shape groups by (customer, group) and ranks each customer's groups with no
    shuffle (Spark's EXPLAIN: no Exchange below the window). The answer is the same.
    """
    from pyspark.errors import AnalysisException
    folder = _folder(paths)
    if folder is None:
        return None
    try:
        row = spark.read.parquet(f"{folder}/{PREPARED_MARKER}").first()
    except AnalysisException:  # no marker: not a Spark-prepared folder
        return None
    if row is None or "buckets" not in row.asDict():  # prepared before bucketing
        return None
    return row["unit"], int(row["buckets"])


def _folder(paths: tuple) -> str | None:
    """The one folder holding every part (or the folder URI itself), else None."""
    folders = {p.rsplit("/", 1)[0] if p.endswith(".parquet") else p.rstrip("/") for p in paths}
    return folders.pop() if len(folders) == 1 else None


def _bucketed_table_sql(name: str, schema, folder: str, unit: str, buckets: int) -> str:
    """An external table over `folder`, bucketed by `unit` (Spark needs the column list)."""
    columns = exp.Schema(expressions=[
        exp.ColumnDef(this=exp.to_identifier(f.name, quoted=True),
                      kind=exp.DataType.build(f.dataType.simpleString(), dialect="spark"))
        for f in schema.fields])
    return (f"CREATE TABLE IF NOT EXISTS {name} {columns.sql('spark')} USING parquet "
            f"CLUSTERED BY ({exp.to_identifier(unit, quoted=True).sql('spark')}) "
            f"INTO {int(buckets)} BUCKETS LOCATION {exp.Literal.string(folder).sql('spark')}")


def _stop(pid: int) -> None:
    spark = _sessions.pop(pid, None) if pid == os.getpid() else None
    if spark is not None:
        spark.stop()
