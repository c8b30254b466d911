"""Ratio intervals: today's construction vs the corner-of-two-intervals one it replaced.

    python bench/bench_intervals.py [--data bench/out/data-1m] [--releases 40] [--epsilon 1]
           [--measure pure|zcdp]

For each query, noisy releases (DuckDB engine, the shipped bounds) are turned
into 95% intervals twice: by dpquery.engine.intervals (test inversion over the
public noise laws) and by the former construction (each part's interval at
α/2, the corner ratios). For an AVG both read the same releases. A purchase
rate's numerator is now centred (Σ(matched − 1/2)); the former construction
read the plain count of matching customers, so its numerator is drawn here as
that count plus OpenDP's noise at the same scale and spend (the same
sensitivity in its own units), with the same denominator release. Prints each
one's coverage of the exact contribution-bounded value, the mean width, and
new/old width (mean over cells of each cell's ratio). Make the data first with
`python bench/make_data.py --rows 1000000 --out bench/out/data-1m`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import settings_for  # noqa: E402
from dpquery.engine import accuracy_plan, catalog, engines, execute, intervals, noise, plan as planner  # noqa: E402
from dpquery.engine.bounded import Cell  # noqa: E402
from dpquery.engine.vector_plan import stat_sensitivity  # noqa: E402
from dpquery.engine.request import parse_body  # noqa: E402

QUERIES = {
    "snack rate per region": "SELECT region, PURCHASE_RATE(category = 'snacks') AS x "
                             "FROM purchases GROUP BY region",
    "snack rate per region x age": "SELECT region, age_band, PURCHASE_RATE(category = 'snacks') "
                                   "AS x FROM purchases GROUP BY region, age_band",
    "mean amount per region": "SELECT region, AVG(amount) AS x FROM purchases GROUP BY region",
    "mean amount per age band": "SELECT age_band, AVG(amount) AS x FROM purchases "
                                "GROUP BY age_band",
}


def plan_for(table, sql: str, measure: str, spend: float):
    request = parse_body({"sql": sql, ("rho" if measure == "zcdp" else "epsilon"): spend})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def exact_ratio(plan, num_sp, den_sp) -> np.ndarray:
    """The contribution-bounded num/den per key, from the engine's exact aggregates."""
    part = plan.bounded[0]
    exact = execute._complete(engines.aggregate(plan.table.engine, plan.table, part), part,
                              plan.keys)
    num = exact[num_sp.stat.column].to_numpy() * num_sp.stat.unit
    return num / exact[den_sp.stat.column].to_numpy() + num_sp.stat.center


def former_rate_numerators(plan, num_sp):
    """() -> the former rate numerator (customers with a matching row) per key, with
    OpenDP's noise at the centred numerator's scale and spend (flag units)."""
    part = plan.bounded[0]
    flag = Cell(num_sp.stat.column, "flag", condition=part.cells[0].condition)
    former = dataclasses.replace(part, cells=(flag, *part.cells[1:]))
    exact = execute._complete(engines.aggregate(plan.table.engine, plan.table, former), former,
                              plan.keys)[num_sp.stat.column].to_list()
    sens = stat_sensitivity(part, num_sp, plan.measure)
    return lambda: np.array(noise.release(exact, num_sp.param, plan.measure, sens, num_sp.share),
                            dtype=float)


def measure_query(plan, releases: int) -> dict:
    num_sp, den_sp = plan.stats
    c, agg = num_sp.stat.center, plan.request.query.aggregates[0]
    domain = accuracy_plan.ratio_domain(plan.table, agg)
    truth = exact_ratio(plan, num_sp, den_sp)
    noises = intervals.Noise.of(num_sp), intervals.Noise.of(den_sp)
    rate = agg.kind == "purchase_rate"
    former = former_rate_numerators(plan, num_sp) if rate else None
    a_num = num_sp.accuracy_half / num_sp.stat.unit if rate else num_sp.accuracy_half
    new, old = [], []
    for _ in range(releases):
        out = execute.release(plan)
        nums = out[num_sp.stat.column].to_numpy() * num_sp.stat.unit
        dens = out[den_sp.stat.column].to_numpy().astype(float)
        shifted = (domain[0] - c, domain[1] - c)
        new += [(lo + c, hi + c) for _v, lo, hi in
                intervals.ratio_intervals(nums, dens, *noises, shifted, plan.request.confidence)]
        olds, c_old, dom_old = (former(), 0.0, domain) if rate else (nums, c, shifted)
        old += [(lo + c_old, hi + c_old) for _v, lo, hi in
                (intervals.corner_interval(n, d, a_num, den_sp.accuracy_half, dom_old)
                 for n, d in zip(olds, dens))]
    truths = np.tile(truth, releases)
    new_a, old_a = np.array(new), np.array(old)
    new_w, old_w = new_a[:, 1] - new_a[:, 0], old_a[:, 1] - old_a[:, 0]
    return {"cells": len(truth), "intervals": len(truths),
            "cover_new": np.mean((new_a[:, 0] <= truths) & (truths <= new_a[:, 1])),
            "cover_old": np.mean((old_a[:, 0] <= truths) & (truths <= old_a[:, 1])),
            "width_new": new_w.mean(), "width_old": old_w.mean(),
            "ratio": np.mean(new_w / np.where(old_w > 0, old_w, np.nan))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "bench/out/data-1m")
    ap.add_argument("--releases", type=int, default=40)
    ap.add_argument("--epsilon", type=float, default=1.0, help="ε (pure) or ρ (zcdp) per query")
    ap.add_argument("--measure", choices=["pure", "zcdp"], default="pure")
    args = ap.parse_args(argv)
    settings = settings_for(args.data, measure=args.measure)
    table = catalog.open_table(settings.datasets["purchases"], settings.prepared_dir,
                               settings.engine)
    print(f"{args.data.name}, {args.measure}, spend {args.epsilon:g}, engine {table.engine}, "
          f"{args.releases} releases per query, 95% intervals")
    print(f"{'query':30} {'cells':>5} {'cover new':>9} {'cover old':>9} "
          f"{'width new':>10} {'width old':>10} {'new/old':>8}")
    for name, sql in QUERIES.items():
        m = measure_query(plan_for(table, sql, args.measure, args.epsilon), args.releases)
        print(f"{name:30} {m['cells']:>5} {m['cover_new']:>9.3f} {m['cover_old']:>9.3f} "
              f"{m['width_new']:>10.4g} {m['width_old']:>10.4g} {m['ratio']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
