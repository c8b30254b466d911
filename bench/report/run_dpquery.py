"""dpquery as a "peer": the same harness and JSON output as bench/peers/run_<peer>.py.

    python bench/report/run_dpquery.py --data DIR --query Q1..Q5 --epsilon 1.0 --reps N --warmup 1

Runs in the project's own Python (dpquery installed).  Each rep is what the
service does for a fresh query, minus HTTP and the ledger: parse, plan (OpenDP
measurement and scale search), release (the only place noise is drawn) and
post-processing into answer rows (`bench/bench_engine.py dp_answer`).

setup() opens the table (a lazy parquet scan, as the service does: the data
is read per query, never held in memory), so first_query_seconds = scan
set-up + first plan + first release.

Extra output:
  exact_bounded      the same query in plain polars with *dpquery's* bounds
                     (bench_engine.baseline; Q5 per region), no noise -- one
                     realisation, since the row truncation is a random sample
  baseline_median_seconds / baseline_first_seconds
                     time of that bounded polars query on the same lazy scan
  plan_median_seconds  plan only (Service.preview's work; no data read)
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

_t = time.perf_counter()
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "peers"))

import polars as pl  # noqa: E402

import common as C  # noqa: E402  (bench/peers/common.py: the shared harness)
from bench import bench_engine as E  # noqa: E402
from bench.common import settings_for  # noqa: E402
from dpquery.engine import catalog, execute, frames, plan as planner  # noqa: E402
from dpquery.engine.request import parse_body  # noqa: E402

IMPORT_S = time.perf_counter() - _t

SQL = {
    "Q1": E.QUERIES["purchases per region"],
    "Q2": E.QUERIES["snack spend per region"],
    "Q3": E.QUERIES["mean amount per region"],
    "Q4": E.QUERIES["customers per region x age"],
    "Q5": "SELECT region, PURCHASE_RATE(category = 'snacks') AS r FROM purchases GROUP BY region",
}
ENGINE_NAME = {"Q1": "purchases per region", "Q2": "snack spend per region",
               "Q3": "mean amount per region", "Q4": "customers per region x age"}


def bounded(q: str, table) -> pl.DataFrame:
    """dpquery's contribution-bounded answer without noise, as {keys..., value}."""
    if q == "Q5":
        ds, lf = table.dataset, table.frame
        unit, g = ds.privacy_unit, ds.groups_per_customer
        lf = frames.truncate_groups(lf, unit, ["region"], g)
        cond = parse_body({"sql": SQL[q], "epsilon": 1}).query.aggregates[0].condition
        per = frames.per_customer(lf, unit, ["region"], [frames.matched_flag(cond, "m")])
        df = per.group_by("region").agg(pl.len().alias("den"), pl.col("m").sum().alias("num")).collect()
        return df.select("region", numerator="num", denominator="den",
                         value=pl.col("num") / pl.col("den"))
    df = E.baseline(ENGINE_NAME[q], table).collect()
    keys = C.GROUP_KEYS[q]
    # bench_engine.baseline sums whole cents (amount__units) since commit 061f4c3
    res = table.dataset.columns["amount"].resolution or 1.0
    if q == "Q3":
        num = "amount__units" if "amount__units" in df.columns else "amount"
        return df.select(*keys, value=pl.col(num) * (res if num == "amount__units" else 1.0) / pl.col("len"))
    other = [c for c in df.columns if c not in keys]
    scale = res if q == "Q2" and df.schema[other[0]].is_integer() else 1.0
    return df.select(*keys, value=pl.col(other[0]) * scale)


def plan_for(table, q: str, eps: float):
    request = parse_body({"sql": SQL[q], "epsilon": eps})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def noise_info(plan) -> list[dict]:
    return [{"statistic": sp.stat.role, "mechanism": sp.distribution, "scale": sp.scale,
             "spend": sp.share, "accuracy_95": sp.accuracy} for sp in plan.stats]


def open_prepared(data: Path):
    """The table as the service opens it: the prepared (filtered, typed) file per version."""
    prepared = Path(__file__).resolve().parents[1] / "out" / "prepared"
    return catalog.open_table(settings_for(data).datasets["purchases"], prepared)


def main():
    args = C.parse_args("dpquery")
    q = args.query
    data = Path(args.data)

    def setup():
        return {"table": open_prepared(data)}

    def one_rep(state, i):
        plan = plan_for(state["table"], q, args.epsilon)
        rows = execute.answer_rows(plan, execute.release(plan))
        alias = plan.request.query.aggregates[0].alias
        keys = C.GROUP_KEYS[q]
        out = [{**{k: r[k] for k in keys}, "value": r[alias]} for r in rows]
        return {"rows": C.fill_domain(q, out), "scale_or_accuracy": noise_info(plan)}

    extra = {}
    table = open_prepared(data)
    ds = table.dataset
    extra["bounds_dpquery"] = {"rows_per_customer": ds.rows_per_customer,
                               "groups_per_customer": ds.groups_per_customer,
                               "customer_total_upper": ds.columns["amount"].customer_total_upper,
                               "resolution": ds.columns["amount"].resolution}
    C.run("dpquery", C.dist_version("opendp", "polars"), args, setup, one_rep,
          supported=True,
          note=f"dpquery plan + release + answer rows in-process, {SQL[q]}",
          import_seconds=IMPORT_S, extra=extra)
    # after the timed part (so peak RSS above is dpquery's alone): baselines
    t0 = time.perf_counter()
    exact = bounded(q, table)
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(1, min(args.reps, 5))):
        t0 = time.perf_counter()
        bounded(q, table)
        times.append(time.perf_counter() - t0)
    ptimes = []
    for _ in range(5):
        t0 = time.perf_counter()
        plan_for(table, q, args.epsilon)
        ptimes.append(time.perf_counter() - t0)
    import json
    print(json.dumps({"exact_bounded": C.fill_domain(q, exact.to_dicts(), fill=0),
                      "baseline_first_seconds": round(first, 4),
                      "baseline_median_seconds": round(statistics.median(times), 4),
                      "plan_median_seconds": round(statistics.median(ptimes), 4)}, default=str))


if __name__ == "__main__":
    main()
