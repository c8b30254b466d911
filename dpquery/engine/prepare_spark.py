"""Bound once per data version, as a Spark job (datasets with engine = "spark").

The same prepared table as prepare.py (DuckDB), written by the cluster where
the data lives: consent-filtered, excluded categories removed, declared
columns typed, integer units for columns with a `resolution` (the column
expressions are prepare.py's own sqlglot trees, printed in the Spark dialect),
and `_row_rank`: each row's rank among its customer's rows in a keyed order.

Stability argument (neighbouring datasets differ in all rows of one customer):
`_row_rank` is ROW_NUMBER() - 1 over the customer's rows ordered by
xxhash64(key, customer id, the row's raw values), ties broken by the row's
values. The window is partitioned by the customer, so a row's rank is a
function of that customer's rows and the secret key only: adding or removing
customer c leaves every other customer's rows and ranks unchanged (whatever
the cluster's partitioning or task order), and each customer's ranks are
exactly 0 .. n_c - 1. Keeping `_row_rank < k` keeps at most k rows of every
customer. The parts are written bucketed by the customer (Spark's hash
bucketing, the count in the `_dpquery_done` marker): a physical layout only,
every customer's rows in one bucket file, no row kept or ranked differently.
It lets the engine (engines/spark.py) read them as a bucketed table, so the
customers shape's per-customer aggregation and group truncation run without
a shuffle. The hash differs from DuckDB's, so a Spark-prepared table keeps other
rows than a DuckDB-prepared one, with the same guarantee (tests/test_spark.py).

What leaves the cluster: nothing of the rows. The job reads the source and
writes the prepared parts to storage the cluster reads (`[spark]
prepared_dir`, or the local var/prepared folder in local mode); the driver
receives file names, sizes and modification times (the data version) and one
row count (checked against the public `max_rows`). The bounding key is part
of the job's plan (visible to whoever administers the cluster, who can read
the rows anyway); partners never see it.
"""
from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path

from sqlglot import exp

from dpquery.config import Dataset, is_uri
from dpquery.engine import prepare as base  # the prepared table's columns and filters
from dpquery.engine.engines import spark as spark_engine
from dpquery.engine.prepare import ROW_RANK

ROWS_PER_PARTITION = 4_000_000  # rows ranked by one task (Spark spills beyond memory)
DONE = spark_engine.PREPARED_MARKER  # a marker dataset: (unit, buckets) of the parts


def data_version(uri: str, engine_settings: dict) -> str:
    """Changes whenever a data file is replaced: names, sizes and modification times,
    listed by the cluster's Hadoop FileSystem (s3a://, hdfs://, file:)."""
    digest = hashlib.sha256()
    for path, size, mtime in list_files(uri, engine_settings):
        digest.update(f"{path.rsplit('/', 1)[-1]}:{size}:{mtime}".encode())
    return digest.hexdigest()[:16]


def list_files(uri: str, engine_settings: dict) -> list[tuple[str, int, int]]:
    """(path, size, modification time) of a Parquet file or a folder's *.parquet files."""
    spark = spark_engine.session(engine_settings)
    reader = spark.read.format("binaryFile")
    if not uri.lower().endswith((".parquet", ".csv")):
        reader = reader.option("pathGlobFilter", "*.parquet")
    try:  # the content column is never selected: Spark lists, it reads no file
        rows = reader.load(uri).select("path", "length", "modificationTime").collect()
    except Exception as exc:
        raise FileNotFoundError(f"no data at {uri} ({type(exc).__name__}): point the "
                                "dataset's path at Parquet files Spark can read") from None
    if not rows:
        raise FileNotFoundError(f"no data at {uri}: no *.parquet files there")
    return sorted((r["path"], int(r["length"]), int(r["modificationTime"].timestamp() * 1e6))
                  for r in rows)


def prepare(ds: Dataset, sources: list, name: str, cache_dir: Path, key: str,
            engine_settings: dict) -> tuple:
    """Write the prepared parts once (other local processes wait) and return them.

    Local output: the part files (Paths). Output on cluster storage
    (`[spark] prepared_dir`): the folder's URI, read by Spark only.
    """
    root = spark_engine.settings_of(engine_settings)["prepared_dir"] or str(cache_dir)
    out = f"{root.rstrip('/')}/spark-{name}"
    spark = spark_engine.session(engine_settings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"spark-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other workers on this host wait for the first
        if not _done(spark, out):
            _build(spark, ds, sources, out, key)
    if is_uri(out):
        return (out,)
    return tuple(sorted(Path(out).glob("part-*.parquet")))


def _build(spark, ds: Dataset, sources: list, out: str, key: str) -> None:
    """One job: filter, type, hash, rank within each customer, write Parquet."""
    from pyspark.sql import functions as F

    view = f"dpq_source_{hashlib.sha256(out.encode()).hexdigest()[:12]}"
    _reader(spark, sources).createOrReplaceTempView(view)
    staged = spark.sql(stage_sql(ds, view, key))
    bar = base._Progress(ds.name, None)  # a line on stderr when it is a terminal (as prepare.py)
    source_rows = _source_rows(spark, view)
    bar.step(1, 3, source_rows)
    partitions = max(int(spark.conf.get("spark.sql.shuffle.partitions")),  # both: buckets
                     -(-source_rows // ROWS_PER_PARTITION))
    _write_bucketed(spark, _ranked(ds, staged, partitions), out, ds.privacy_unit, partitions)
    bar.step(2, 3, source_rows)
    prepared_rows = spark.read.parquet(out).count()
    bar.step(3, 3, prepared_rows)
    bar.finish()
    base._check_max_rows(ds, prepared_rows)
    marker = spark.range(1).select(F.lit(ds.privacy_unit).alias("unit"),
                                   F.lit(partitions).alias("buckets"))
    marker.write.mode("overwrite").parquet(f"{out}/{DONE}")
    spark.catalog.dropTempView(view)


def _ranked(ds: Dataset, staged, partitions: int):
    """The prepared columns and `_row_rank`, ranked within each customer's hash partition."""
    from pyspark.sql import Window, functions as F
    cols = base._output_columns(ds)
    order = Window.partitionBy(ds.privacy_unit).orderBy("_h", *cols)
    return staged.repartition(partitions, ds.privacy_unit).select(
        *cols, (F.row_number().over(order) - 1).cast("bigint").alias(ROW_RANK))


def _write_bucketed(spark, ranked, out: str, unit: str, buckets: int) -> None:
    """Parquet parts at `out`, bucketed by `unit` (one file per bucket: the rows are already
    hash-partitioned by `unit` into `buckets` tasks). Spark writes bucketing only through a
    catalog table: an external one, dropped at once (its files stay)."""
    name = f"dpq_write_{hashlib.sha256(out.encode()).hexdigest()[:12]}"
    (ranked.write.format("parquet").bucketBy(buckets, unit).mode("overwrite")
     .option("path", out).saveAsTable(name))
    spark.sql(f"DROP TABLE IF EXISTS {name}")


def stage_sql(ds: Dataset, source: str, key: str) -> str:
    """Typed, filtered rows with the keyed row hash `_h` (prepare.py's column trees)."""
    raw = [base._col(c) for c in [ds.privacy_unit, *base._raw_columns(ds)]]
    row_hash = exp.alias_(exp.func("xxhash64", exp.Literal.string(key), *raw), "_h")
    query = (exp.select(*base._typed_columns(ds), row_hash)
             .from_(exp.to_table(source)).where(base._row_filter(ds)))
    return query.sql("spark")


def _reader(spark, sources: list):
    paths = [str(s) for s in sources]
    if len(paths) == 1 and paths[0].lower().endswith(".csv"):
        return spark.read.options(header=True, inferSchema=True).csv(paths[0])
    return spark.read.parquet(*paths)


def _source_rows(spark, view: str) -> int:
    """Rows in the source (Parquet: from the files' footers); sizes the ranking tasks."""
    return spark.table(view).count()


def _done(spark, out: str) -> bool:
    from pyspark.errors import AnalysisException
    try:
        spark.read.parquet(f"{out}/{DONE}").count()
        return True
    except AnalysisException:  # PATH_NOT_FOUND: not prepared yet
        return False
