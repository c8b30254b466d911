"""A Spark Connect master (`spark.master = "sc://host:port"`) prepares and answers like classic mode.

The test starts a real Spark Connect server (a local[2] Spark with the Connect
plugin, in its own process and JVM) on a free loopback port. The engine, in a
child Python process without a JVM (pyspark refuses a Connect session next to
a classic one in one process), talks to it over gRPC only, as it would to a
cluster: the prepare job (bucketed parts, marker) and the bounded aggregation
both run through Connect. Its prepared rows and its exact
aggregates must equal classic mode's (the shared in-process session) and the
polars reference's, with the same bounding key.
"""
from __future__ import annotations

import copy
import select
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from dpquery.engine import catalog, engines, plan as planner
from dpquery.engine.engines import spark as spark_engine
from dpquery.engine.request import parse_body
from settings_helpers import make_settings

pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect]: pip install -e '.[test]'")
pytestmark = [pytest.mark.slow,  # pyspark 4 checks pandas on import of its Connect client
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")]

SERVER = """
import sys
from pyspark.sql import SparkSession
conf = {"spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": sys.argv[1],
        "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"}
builder = SparkSession.builder.master("local[2]").appName("dpquery-connect-test")
for key, value in conf.items():
    builder = builder.config(key, value)
spark = builder.getOrCreate()
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
spark.stop()
"""
START_SECONDS = 300  # a JVM start on a shared 2-core machine

QUERIES = [
    "SELECT region, COUNT(*) AS a FROM purchases GROUP BY region",
    "SELECT region, SUM(amount) AS a FROM purchases WHERE category = 'snacks' GROUP BY region",
    "SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS a FROM purchases "
    "GROUP BY region, age_band",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def connect_url():
    """sc://127.0.0.1:<port> of a Spark Connect server this fixture starts and stops."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], START_SECONDS)
        line = server.stdout.readline() if ready else ""
        assert line.strip() == "ready", "the local Spark Connect server did not start"
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.stdin.close()  # the server stops its Spark and exits
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, demo_data):
    out = tmp_path_factory.mktemp("connect-data") / "purchases"
    out.mkdir()
    pl.read_parquet(demo_data).filter(pl.col("customer_id") <= 300).write_parquet(out / "p.parquet")
    return out


def _plan(table, sql: str):
    request = parse_body({"sql": sql, "epsilon": 1.0})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def _exact(table, part) -> pl.DataFrame:
    out = engines.aggregate("spark", table, part)
    return out.sort(list(part.by)) if part.by else out


def _rows(frame: pl.LazyFrame) -> pl.DataFrame:
    frame = frame.collect()
    return frame.sort(frame.columns)


def connect_side(url: str, data: str, tmp: str) -> None:
    """Run in a child process (pyspark refuses a Connect session beside this process's
    classic one): prepare and answer QUERIES through `url`, writing each part's exact
    aggregates to tmp/answers/<query>-<part>.parquet."""
    tmp_path = Path(tmp)
    settings = make_settings(tmp_path / "settings", Path(data), engine="spark")
    engine = copy.deepcopy(settings.engine)
    engine["spark"]["master"] = url
    table = catalog.open_table(settings.datasets["purchases"], tmp_path / "connect", engine)
    assert type(spark_engine.session(engine)).__module__ == "pyspark.sql.connect.session"
    (tmp_path / "answers").mkdir()
    for i, sql in enumerate(QUERIES):
        for j, part in enumerate(_plan(table, sql).bounded):
            _exact(table, part).write_parquet(tmp_path / "answers" / f"{i}-{j}.parquet")


def test_a_connect_master_prepares_and_answers_as_classic_mode(connect_url, small_data,
                                                              tmp_path):
    settings = make_settings(tmp_path, small_data, engine="spark")
    classic = catalog.open_table(settings.datasets["purchases"], tmp_path / "classic",
                                 settings.engine)
    (tmp_path / "connect").mkdir()
    shutil.copy(tmp_path / "classic" / "bounding.key", tmp_path / "connect" / "bounding.key")
    child = subprocess.run(
        [sys.executable, "-c", "import sys; import test_spark_connect as t; t.connect_side(*sys.argv[1:])",
         connect_url, str(small_data), str(tmp_path)],
        cwd=Path(__file__).parent, capture_output=True, text=True, timeout=START_SECONDS)
    assert child.returncode == 0, child.stderr[-2000:]
    remote = sorted((tmp_path / "connect").glob("spark-*/part-*.parquet"))
    assert remote and set(remote).isdisjoint(classic.files)
    assert _rows(pl.scan_parquet(remote)).equals(_rows(classic.frame))
    for i, sql in enumerate(QUERIES):
        for j, part in enumerate(_plan(classic, sql).bounded):
            theirs = pl.read_parquet(tmp_path / "answers" / f"{i}-{j}.parquet")
            assert theirs.equals(_exact(classic, part)), sql
            reference = engines.aggregate("polars", classic, part)
            assert theirs.equals(reference.sort(list(part.by)) if part.by else reference), sql
