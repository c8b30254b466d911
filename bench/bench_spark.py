"""Spark engine benchmark: dpquery's fresh queries and prepare job vs plain Spark SQL.

    python bench/make_data.py --rows 10000000 --out bench/out/data-10m
    python bench/bench_spark.py [--sizes 10m,100m] [--reps 3] [--master local[2]]

In one Spark session (local mode here: 2 cores are not a cluster), per size:
- the prepare job (filter, type, keyed per-customer ranks, write Parquet; once
  per data version) against a plain Spark SQL pass over the same files
  (consented rows, grouped count: one full scan);
- each BENCHMARKS.md query, fresh (plan + Spark's bounded aggregation over the
  prepared parts + OpenDP noise + answer rows), interleaved with the plain,
  unbounded Spark SQL query on the raw files (consent and exclusions applied,
  no bounds, no noise); median of `reps`, and the ratio;
- peak memory of the Python driver and of the JVM (in local mode the JVM is the
  driver and the executors at once; only aggregates cross to Python).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import settings_for  # noqa: E402
from dpquery.engine import catalog, execute, plan as planner  # noqa: E402
from dpquery.engine.engines import spark as spark_engine  # noqa: E402
from dpquery.engine.request import parse_body  # noqa: E402

SIZES = {"1m": "bench/out/data-1m", "10m": "bench/out/data-10m", "100m": "bench/out/data-100m"}
KEPT = "opted_in AND category NOT IN ('pharmacy', 'alcohol', 'tobacco', 'prophylactics')"
QUERIES = {  # name: (dpquery SQL, plain Spark SQL on the raw files)
    "purchases per region": (
        "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region",
        f"SELECT region, COUNT(*) FROM raw WHERE {KEPT} GROUP BY region"),
    "snack spend per region": (
        "SELECT region, SUM(amount) AS s FROM purchases WHERE category = 'snacks' GROUP BY region",
        f"SELECT region, SUM(amount) FROM raw WHERE {KEPT} AND category = 'snacks' GROUP BY region"),
    "mean amount per region": (
        "SELECT region, AVG(amount) AS m FROM purchases GROUP BY region",
        f"SELECT region, AVG(amount) FROM raw WHERE {KEPT} GROUP BY region"),
    "customers per region x age": (
        "SELECT region, age_band, COUNT(DISTINCT customer_id) AS c FROM purchases "
        "GROUP BY region, age_band",
        f"SELECT region, age_band, COUNT(DISTINCT customer_id) FROM raw WHERE {KEPT} "
        "GROUP BY region, age_band"),
    "snack rate per region x age": (
        "SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS r FROM purchases "
        "GROUP BY region, age_band",
        "SELECT region, age_band, COUNT(DISTINCT CASE WHEN category = 'snacks' THEN customer_id "
        f"END) / COUNT(DISTINCT customer_id) FROM raw WHERE {KEPT} GROUP BY region, age_band"),
}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fresh(table, sql: str) -> None:
    """A fresh answer, as the service computes it (the ledger aside)."""
    request = parse_body({"sql": sql, "epsilon": 1.0})
    plan = planner.build(request, catalog.check_query(request.query, {"purchases": table}))
    execute.answer_rows(plan, execute.release(plan))


def jvm_peak_mib() -> float:
    """Peak resident memory (VmHWM) of this process's child JVMs."""
    peak = 0.0
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in task.read_text().split():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
    return peak


def bench_size(size: str, reps: int, engine_settings: dict, lines: list) -> None:
    data = ROOT / SIZES[size]
    files = sorted(str(f) for f in data.glob("*.parquet"))
    settings = settings_for(data, engine="spark")
    spark = spark_engine.session(engine_settings)
    spark.read.parquet(*files).createOrReplaceTempView("raw")
    rows = spark.table("raw").count()
    plain_scan = timed(lambda: spark.sql(QUERIES["purchases per region"][1]).collect())
    cache = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    holder = {}
    prep = timed(lambda: holder.update(t=catalog.open_table(settings.datasets["purchases"], cache,
                                                              engine_settings)))
    lines.append(f"| {size} ({rows:,} rows) | prepare job (once per data version) | {prep:.1f} "
                 f"| {plain_scan:.1f} | {prep / plain_scan:.1f}x |")
    table = holder["t"]
    for name, (dp_sql, plain_sql) in QUERIES.items():
        dp, plain = [], []
        for _ in range(reps):  # interleaved: both see the same machine load
            dp.append(timed(lambda: fresh(table, dp_sql)))
            plain.append(timed(lambda: spark.sql(plain_sql).collect()))
        d, p = statistics.median(dp), statistics.median(plain)
        lines.append(f"| {size} | {name} | {d:.2f} | {p:.2f} | {d / p:.2f}x |")
        print(lines[-1], flush=True)
    shutil.rmtree(cache)  # the prepared parts (about 400 MB at 100m): made again next run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10m")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="4g")
    args = ap.parse_args()
    engine_settings = {"spark": {"master": args.master, "app_name": "dpquery-bench",
                                 "conf": {"spark.driver.memory": args.driver_memory,
                                          "spark.sql.shuffle.partitions": "8"},
                                 "prepared_dir": None}}
    lines = ["| data | query | dpquery (s) | plain Spark SQL (s) | ratio |", "|---|---|---|---|---|"]
    for size in args.sizes.split(","):
        bench_size(size, args.reps, engine_settings, lines)
    py_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n".join(lines))
    print(f"\npeak RSS: Python driver {py_peak:.0f} MiB (receives only aggregates); "
          f"JVM (local mode: driver + executors) {jvm_peak_mib():.0f} MiB, "
          f"spark.driver.memory = {args.driver_memory}, master = {args.master}")


if __name__ == "__main__":
    main()
