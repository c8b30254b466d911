"""The Spark engine's own pieces: its prepare job, data versions from URIs, settings.

Spark's exact aggregates are compared with the reference in test_engines.py
(over DuckDB-prepared parts). The Spark prepare keys its ranks with another
hash than DuckDB's, so its stability argument (prepare_spark.py) is tested
here: same rows and columns as DuckDB's prepare, ranks 0..n-1 per customer,
and a neighbouring dataset leaves every other customer's ranks unchanged.
One local Spark session serves the whole test session (engines/spark.py).
"""
from __future__ import annotations

import copy
import shutil
import sys

import polars as pl
import pytest
from sqlglot import exp

from dpquery import config
from dpquery.engine import catalog, engines, execute, plan as planner
from dpquery.engine.engines import spark as spark_engine
from dpquery.engine.engines.sqlplan import compile_part
from dpquery.engine.request import parse_body
from dpquery.errors import ConfigError, InvalidQuery
from settings_helpers import make_settings, shipped_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, demo_data):
    """300 customers of the demo data in two Parquet files."""
    out = tmp_path_factory.mktemp("spark-data") / "purchases"
    out.mkdir()
    raw = pl.read_parquet(demo_data).filter(pl.col("customer_id") <= 300)
    raw.slice(0, raw.height // 2).write_parquet(out / "part-0.parquet")
    raw.slice(raw.height // 2).write_parquet(out / "part-1.parquet")
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, small_data):
    """(Spark-prepared table, DuckDB-prepared table) of the same data with one key."""
    tmp = tmp_path_factory.mktemp("spark-prep")
    tables = {}
    for engine in ("spark", "duckdb"):
        settings = make_settings(tmp, small_data, engine=engine)
        tables[engine] = catalog.open_table(settings.datasets["purchases"], tmp / "prep",
                                            settings.engine)
    return tables["spark"], tables["duckdb"]


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns)


def test_same_columns_and_rows_as_the_duckdb_prepare(prepared, small_data):
    spark, duck = prepared
    a, b = spark.frame.collect(), duck.frame.collect()
    assert a.schema == b.schema == pl.Schema(spark.schema)
    assert _sorted(a.drop("_row_rank")).equals(_sorted(b.drop("_row_rank")))
    raw = pl.read_parquet(small_data)
    kept = raw.filter(pl.col("opted_in") & ~pl.col("category").is_in(
        list(spark.dataset.excluded_categories)))
    assert a.height == kept.height < raw.height
    assert not set(a["category"]) & set(spark.dataset.excluded_categories)


def test_ranks_number_each_customers_rows_from_zero(prepared):
    df = prepared[0].frame.collect()
    per = df.group_by("customer_id").agg(n=pl.len(), lo=pl.col("_row_rank").min(),
                                         hi=pl.col("_row_rank").max(),
                                         distinct=pl.col("_row_rank").n_unique())
    assert per.height > 100
    assert per.filter((pl.col("lo") != 0) | (pl.col("hi") != pl.col("n") - 1)
                      | (pl.col("distinct") != pl.col("n"))).height == 0


def test_the_keyed_order_differs_from_duckdbs(prepared):
    """Another hash keeps other rows: why test_engines runs Spark over DuckDB's parts."""
    spark, duck = (t.frame.filter(pl.col("_row_rank") < 3).collect() for t in prepared)
    assert spark.height == duck.height
    assert not _sorted(spark).equals(_sorted(duck))


def test_removing_a_customer_leaves_every_other_customers_ranks_unchanged(prepared, small_data,
                                                                           tmp_path):
    """Neighbouring datasets: all rows of the heaviest customer removed, data re-ordered."""
    spark = prepared[0]
    raw = pl.read_parquet(small_data)
    heavy = raw.group_by("customer_id").len().sort("len", descending=True)["customer_id"][0]
    neighbour = tmp_path / "neighbour"
    neighbour.mkdir()
    raw.filter(pl.col("customer_id") != heavy).reverse().write_parquet(neighbour / "p.parquet")
    (tmp_path / "prep").mkdir()
    key_dir = spark.files[0].parent.parent
    shutil.copy(key_dir / "bounding.key", tmp_path / "prep" / "bounding.key")
    settings = make_settings(tmp_path, neighbour, engine="spark")
    other = catalog.open_table(settings.datasets["purchases"], tmp_path / "prep", settings.engine)
    left = _sorted(spark.frame.collect().filter(pl.col("customer_id") != heavy))
    assert left.equals(_sorted(other.frame.collect()))
    assert heavy not in set(other.frame.collect()["customer_id"])


BUCKETED_QUERIES = [  # customers shape (truncated, one and two group columns, no group), rows
    "SELECT region, COUNT(DISTINCT customer_id) AS a FROM purchases GROUP BY region",
    "SELECT region, SUM(amount) AS a FROM purchases WHERE category = 'snacks' GROUP BY region",
    "SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS a FROM purchases "
    "WHERE year >= 2020 GROUP BY region, age_band",
    "SELECT COUNT(DISTINCT customer_id) AS a FROM purchases WHERE NOT category = 'produce'",
    "SELECT age_band, AVG(amount) AS a FROM purchases GROUP BY age_band",
]


def test_spark_prepared_parts_are_read_bucketed_with_the_references_aggregates(prepared):
    """The Spark prepare writes its parts bucketed by customer; the engine reads them as a
    bucketed table, and every shape still gives the polars reference's exact aggregates
    over the same parts (the reference reads the files; bucketing is layout only)."""
    spark_table = prepared[0]
    assert spark_engine._bucketing(spark_engine.session(spark_table.engine_settings),
                                   tuple(map(str, spark_table.files))) is not None
    for sql in BUCKETED_QUERIES:
        for part in _plan(spark_table, sql).bounded:
            by = list(part.by)
            ours = engines.aggregate("spark", spark_table, part)
            reference = engines.aggregate("polars", spark_table, part)
            assert (ours.sort(by) if by else ours).equals(
                reference.sort(by) if by else reference), sql


def test_the_customers_shape_needs_no_shuffle_below_its_window(prepared):
    """Bucketed by customer, the per-(customer, group) aggregation and the ranking of a
    customer's groups run where the rows are: one exchange, for the final GROUP BY."""
    spark_table, duck_table = prepared
    part = _plan(spark_table, BUCKETED_QUERIES[1]).bounded[0]
    assert part.shape == "customers" and part.groups is not None

    def exchanges(table) -> int:
        spark = spark_engine.session(table.engine_settings)
        source = exp.to_table(spark_engine._view(spark, table.files))
        sql = compile_part(part, source).sql("spark")
        plan = spark.sql(sql)._jdf.queryExecution().executedPlan().toString()
        return plan.count("Exchange hashpartitioning")

    assert exchanges(spark_table) == 1
    assert exchanges(duck_table) == 3  # not bucketed: by (customer, group), customer, group


def test_prepared_once_per_data_version(prepared, small_data, tmp_path):
    spark = prepared[0]
    settings = make_settings(tmp_path, small_data, engine="spark")
    mtimes = [f.stat().st_mtime_ns for f in spark.files]
    again = catalog.open_table(settings.datasets["purchases"], spark.files[0].parent.parent,
                               settings.engine)
    assert again.files == spark.files and again.version == spark.version
    assert [f.stat().st_mtime_ns for f in again.files] == mtimes


def test_the_prepare_job_shows_a_progress_line_on_a_terminal(small_data, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    settings = make_settings(tmp_path, small_data, engine="spark")
    table = catalog.open_table(settings.datasets["purchases"], tmp_path / "prep", settings.engine)
    err = capsys.readouterr().err
    assert "preparing purchases" in err and "1/3 passes" in err
    assert f"3/3 passes, {table.frame.select(pl.len()).collect().item():,} rows" in err


def test_a_table_larger_than_max_rows_stops_start_up(small_data, tmp_path):
    settings = make_settings(tmp_path, small_data, engine="spark", max_rows=100,
                             bounds__rows_per_customer=10,  # max_rows >= rows_per_customer
                             bounds__auto_max_rows_per_customer=100)  # and >= auto's largest
    with pytest.raises(ConfigError, match="max_rows"):
        catalog.open_table(settings.datasets["purchases"], tmp_path / "prep", settings.engine)


def _plan(table, sql: str):
    request = parse_body({"sql": sql, "epsilon": 1.0})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def test_uri_data_prepared_on_cluster_storage(small_data, tmp_path):
    """file: URIs stand for s3a:// or hdfs://: Spark lists the files (the data version),
    prepares onto `prepared_dir`, and answers; the service reads no row."""
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    settings = make_settings(tmp_path, f"file:{data}", engine="spark")
    engine = copy.deepcopy(settings.engine)
    engine["spark"]["prepared_dir"] = f"file:{tmp_path / 'cluster'}"
    table = catalog.open_table(settings.datasets["purchases"], tmp_path / "var", engine)
    assert table.remote and len(table.files) == 1 and table.files[0].startswith("file:")
    assert table.frame.collect().height == 0  # no rows on the service's side
    assert any((tmp_path / "cluster").glob("spark-purchases-*/part-*.parquet"))
    plan = _plan(table, "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region")
    rows = execute.answer_rows(plan, execute.release(plan))
    assert [r["region"] for r in rows] == list(table.dataset.columns["region"].values)
    with pytest.raises(InvalidQuery, match="prepared on the Spark cluster"):
        _plan(table, "SELECT MEDIAN(amount) AS m FROM purchases")
    again = catalog.open_table(settings.datasets["purchases"], tmp_path / "var", engine)
    assert again.version == table.version
    pl.read_parquet(data / "part-1.parquet").head(10).write_parquet(data / "part-1.parquet")
    changed = catalog.open_table(settings.datasets["purchases"], tmp_path / "var", engine)
    assert changed.version != table.version


def test_a_uri_path_needs_the_spark_engine(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets.purchases.path is a URI .*engine = \"spark\""):
        make_settings(tmp_path, "s3a://bucket/purchases", engine="duckdb")


def test_spark_settings_are_checked(tmp_path):
    raw = shipped_config()
    raw["spark"] = {"master": "sc://spark.example:15002", "conf": {"spark.x": True, "spark.y": 4}}
    settings = config.from_dict(copy.deepcopy(raw), base=tmp_path)
    assert settings.engine["spark"]["conf"] == {"spark.x": "true", "spark.y": "4"}
    assert settings.engine["spark"]["master"] == "sc://spark.example:15002"
    raw["spark"] = {"mastr": "local[2]"}
    with pytest.raises(ConfigError, match="spark: unknown key 'mastr'"):
        config.from_dict(copy.deepcopy(raw), base=tmp_path)
    raw["spark"] = {"conf": {"spark.x": {"nested": 1}}}
    with pytest.raises(ConfigError, match="spark.conf.spark.x: expected a string"):
        config.from_dict(raw, base=tmp_path)


def test_missing_java_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"spark.master is 'local\[2\]'.*no Java runtime"):
        spark_engine._check_java("local[2]")
