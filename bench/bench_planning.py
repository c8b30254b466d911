"""Planning time (no data read, nothing charged): planner.build per query and measure.

    python bench/bench_planning.py [--data bench/out/data-1m] [--reps 5]

Prints the median of `reps` plans per query at a spend not planned before in
the process (each rep adds 1e-6, so no cache helps), under pure DP (ε) and
zCDP (ρ). Make the data first with `python bench/make_data.py --rows 1000000
--out bench/out/data-1m`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import settings_for  # noqa: E402
from dpquery.engine import catalog, plan as planner  # noqa: E402
from dpquery.engine.request import parse_body  # noqa: E402

QUERIES = {
    "count per region": "SELECT region, COUNT(*) FROM purchases GROUP BY region",
    "mean amount per region": "SELECT region, AVG(amount) AS a FROM purchases GROUP BY region",
    "snack rate per region": "SELECT region, PURCHASE_RATE(category = 'snacks') AS r "
                             "FROM purchases GROUP BY region",
    "sum and count per region x age": "SELECT region, age_band, SUM(amount) AS s, COUNT(*) AS n "
                                      "FROM purchases GROUP BY region, age_band",
}


def median_seconds(table, sql: str, key: str, reps: int) -> float:
    times = []
    for i in range(reps):
        request = parse_body({"sql": sql, key: 0.5 + i * 1e-6})
        checked = catalog.check_query(request.query, {"purchases": table})
        start = time.perf_counter()
        planner.build(request, checked)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/out/data-1m", type=Path)
    ap.add_argument("--reps", default=5, type=int)
    args = ap.parse_args()
    prepared = Path(tempfile.mkdtemp(prefix="dpq-plan-"))
    print(f"{'query':34} {'pure (s)':>10} {'zcdp (s)':>10} {'zcdp/pure':>10}")
    tables = {m: catalog.open_table(settings_for(args.data, measure=m).datasets["purchases"], prepared)
              for m in ("pure", "zcdp")}
    for name, sql in QUERIES.items():
        pure = median_seconds(tables["pure"], sql, "epsilon", args.reps)
        zcdp = median_seconds(tables["zcdp"], sql, "rho", args.reps)
        print(f"{name:34} {pure:10.4f} {zcdp:10.4f} {zcdp / pure:9.1f}x")


if __name__ == "__main__":
    main()
