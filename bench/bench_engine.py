"""Engine benchmark: dpquery's release vs the same bounded query in plain polars.

    python bench/bench_engine.py [--sizes 1m,10m] [--reps 5] [--memory-queries 1000]

For each data size and query it prints the median time of dpquery's full
answer (plan + OpenDP release + post-processing) and of the same
contribution-bounded query in plain polars without noise (same truncation,
clamping and per-customer grouping), and their ratio. Then preview (plan only)
latency, and resident memory sampled across many queries on one process (the
data is scanned per query, never reloaded into memory).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import settings_for  # noqa: E402
from dpquery.engine import catalog, execute, frames, plan as planner  # noqa: E402
from dpquery.engine.request import parse_body  # noqa: E402

SIZES = {"1m": 1_000_000, "10m": 10_000_000}
QUERIES = {
    "purchases per region": "SELECT region, COUNT(*) FROM purchases GROUP BY region",
    "snack spend per region": "SELECT region, SUM(amount) FROM purchases WHERE category = 'snacks' GROUP BY region",
    "mean amount per region": "SELECT region, AVG(amount) FROM purchases GROUP BY region",
    "customers per region x age": "SELECT region, age_band, COUNT(DISTINCT customer_id) FROM purchases GROUP BY region, age_band",
    "snack rate per region x age": "SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS r FROM purchases GROUP BY region, age_band",
}


def baseline(name: str, table) -> pl.LazyFrame:
    """The same contribution-bounded query in plain polars, no noise."""
    ds, lf = table.dataset, table.frame
    unit, k = ds.privacy_unit, ds.rows_per_customer
    amount = ds.columns["amount"]
    if name == "purchases per region":
        return frames.truncate_rows(lf, unit, k).group_by("region").agg(pl.len())
    if name == "snack spend per region":
        lf = lf.filter(pl.col("category") == "snacks")
        lf = frames.truncate_groups(lf, unit, ["region"], catalog.groups_bound(ds, ["region"]))
        per = frames.per_customer(lf, unit, ["region"], [frames.customer_total(
            "amount__units", 0, round(amount.upper / amount.resolution), "t")])
        top = round(amount.customer_total_upper / amount.resolution)
        return per.group_by("region").agg(pl.col("t").clip(0, top).sum())
    if name == "mean amount per region":
        lf = frames.truncate_rows(lf, unit, k)
        return lf.group_by("region").agg(pl.col("amount__units").clip(0, 10000).sum(), pl.len())
    by = ["region", "age_band"]
    lf = frames.truncate_groups(lf, unit, by, catalog.groups_bound(ds, by))
    if name == "customers per region x age":
        return frames.per_customer(lf, unit, by, [pl.len()]).group_by(by).agg(pl.len())
    cond = parse_body({"sql": QUERIES[name], "epsilon": 1}).query.aggregates[0].condition
    per = frames.per_customer(lf, unit, by, [frames.matched_flag(cond, "m")])
    return per.group_by(by).agg(pl.len(), pl.col("m").sum())


def timed(fn, reps: int) -> tuple[float, float]:
    """(first call seconds, median of `reps` further calls)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def dp_answer(table, sql: str):
    request = parse_body({"sql": sql, "epsilon": 1.0})
    plan = planner.build(request, catalog.check_query(request.query, {"purchases": table}))
    return execute.answer_rows(plan, execute.release(plan))


def preview(table, sql: str):
    request = parse_body({"sql": sql, "epsilon": 1.0})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def data_for(size: str) -> Path:
    out = ROOT / "bench" / "out" / f"data-{size}"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_data.py"), "--rows",
                    str(SIZES[size]), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def open_prepared(size: str):
    """The dataset as the service opens it: the prepared (filtered, typed) table."""
    settings = settings_for(data_for(size))
    return catalog.open_table(settings.datasets["purchases"], ROOT / "bench" / "out" / "prepared")


def latency_table(sizes: list[str], reps: int) -> None:
    print(f"\n## Latency: dpquery answer vs plain polars (median of {reps} after one warm-up)\n")
    print("| rows | query | polars s | dpquery s | ratio | dpquery first s |")
    print("|---|---|---:|---:|---:|---:|")
    for size in sizes:
        table = open_prepared(size)
        for name, sql in QUERIES.items():
            _, base = timed(lambda: baseline(name, table).collect(), reps)
            first, dp_t = timed(lambda: dp_answer(table, sql), reps)
            print(f"| {size} | {name} | {base:.3f} | {dp_t:.3f} | {dp_t / base:.2f}x | {first:.3f} |")


def engine_table(sizes: list[str], reps: int) -> None:
    """Where the gap comes from: one grouped count, no truncation, Python polars vs OpenDP.

    OpenDP collects a release inside its own embedded polars engine; this
    isolates that engine's cost from dpquery's planning and bounding.
    """
    import opendp.prelude as dp
    from dpquery.engine.plan import _domain
    print("\n## Engine: the same grouped count collected by Python polars and by OpenDP\n")
    print("| rows | polars s | OpenDP s | ratio |")
    print("|---|---:|---:|---:|")
    for size in sizes:
        table = open_prepared(size)
        keys = pl.LazyFrame({"region": list(table.dataset.columns["region"].values)})
        plan = keys.join(pl.LazyFrame(schema=table.schema).group_by("region").agg(
            dp.len(scale=100.0, signed=True)), on="region", how="left", nulls_equal=True)
        meas = dp.m.make_private_lazyframe(_domain(table), dp.symmetric_distance(),
                                           dp.max_divergence(), plan)
        plain = keys.join(table.frame.group_by("region").agg(pl.len()), on="region", how="left")
        _, base = timed(plain.collect, reps)
        _, odp = timed(lambda: meas(table.frame).collect(), reps)
        print(f"| {size} | {base:.3f} | {odp:.3f} | {odp / base:.2f}x |")


def preview_table(reps: int) -> None:
    table = open_prepared("1m")
    print("\n## Preview (plan only, no data read)\n")
    print("| query | median ms |")
    print("|---|---:|")
    for name, sql in QUERIES.items():
        _, t = timed(lambda: preview(table, sql), reps * 4)
        print(f"| {name} | {t * 1000:.1f} |")


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_table(n: int) -> None:
    table = open_prepared("1m")
    sqls = list(QUERIES.values())
    print(f"\n## Memory across {n} queries on 1M rows (one process)\n")
    print("| queries done | RSS MiB |")
    print("|---:|---:|")
    for i in range(n):
        dp_answer(table, sqls[i % len(sqls)])
        if (i + 1) % max(1, n // 10) == 0 or i == 0:
            print(f"| {i + 1} | {rss_mib():.0f} |", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,10m")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--memory-queries", type=int, default=1000)
    args = parser.parse_args()
    latency_table(args.sizes.split(","), args.reps)
    engine_table(args.sizes.split(","), args.reps)
    preview_table(args.reps)
    if args.memory_queries:
        memory_table(args.memory_queries)


if __name__ == "__main__":
    main()
