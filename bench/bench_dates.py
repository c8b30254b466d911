"""What date parts and date filters cost: the exact bounded aggregate per engine.

The reference (OpenDP's polars plan, run without noise) reads a date column
as ISO text (catalog.open_table) and parses it back for a date part; DuckDB
reads the prepared DATE. Compared with the configured `year` column on the
same demo data. Prints the best of `--reps` timings; no assertion.

    python -m bench.bench_dates --customers 20000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from dpquery.demo import write_demo
from dpquery.engine import catalog, engines, plan as planner
from dpquery.engine.request import parse_body

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from settings_helpers import make_settings  # noqa: E402  (the shipped config, pointed at data)

QUERIES = [
    "SELECT year AS y, COUNT(*) AS n FROM purchases GROUP BY y",
    "SELECT YEAR(purchased_on) AS y, COUNT(*) AS n FROM purchases GROUP BY y",
    "SELECT MONTH(purchased_on) AS m, SUM(amount) AS s FROM purchases GROUP BY m",
    "SELECT DAYOFWEEK(purchased_on) AS d, COUNT(*) AS n FROM purchases "
    "WHERE purchased_on >= '2020-01-01' GROUP BY d",
]


def best_of(reps: int, fn) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--customers", type=int, default=20000)
    args.add_argument("--reps", type=int, default=3)
    opts = args.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dates-"))
    write_demo(tmp / "data", customers=opts.customers, seed=3)
    rows = pl.scan_parquet(str(tmp / "data" / "*.parquet")).select(pl.len()).collect().item()
    settings = make_settings(tmp, tmp / "data", engine="duckdb")
    table = catalog.open_table(settings.datasets["purchases"], tmp / "prep", settings.engine)
    print(f"{rows:,} rows ({opts.customers:,} customers), best of {opts.reps}")
    for sql in QUERIES:
        request = parse_body({"sql": sql, "epsilon": 1.0}, datasets={"purchases": table.dataset})
        plan = planner.build(request, catalog.check_query(request.query, {"purchases": table}))
        part = plan.bounded[0]
        cells = [f"{e} {best_of(opts.reps, lambda: engines.aggregate(e, plan.table, part)):.3f}s"
                 for e in ("polars", "duckdb")]
        print(f"  {' | '.join(cells)}  {sql}")


if __name__ == "__main__":
    main()
