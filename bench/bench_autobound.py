"""Utility of `"bounds": "auto"`: error against the exact answer, configured bound vs auto.

For each query, at ε (default 1) over `--reps` fresh releases: the mean over
groups of |answer − exact| / exact, where exact is the unbounded answer over
the prepared table (consented rows, excluded categories removed). Also the
bias alone (the exact bounded answer at the bound used vs exact) and, for
auto, the bounds it chose. Prints a table; `--write` also writes it to
BENCHMARKS-autobound.md (linked from BENCHMARKS.md).

    python -m bench.bench_autobound --data bench/out/data-1m --reps 20 --write
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import polars as pl

from bench.common import ROOT, settings_for
from dpquery.engine import autobound, catalog, engines, plan as planner
from dpquery.engine.request import parse_body
from dpquery.service import release_answer

QUERIES = {
    "count by region": ("SELECT region, COUNT(*) AS v FROM purchases GROUP BY region",
                        pl.len()),
    "snacks count by region": ("SELECT region, COUNT(*) AS v FROM purchases "
                               "WHERE category = 'snacks' GROUP BY region", pl.len()),
    "count by age_band 2024+": ("SELECT age_band, COUNT(*) AS v FROM purchases "
                                "WHERE year >= 2024 GROUP BY age_band", pl.len()),
}
FILTERS = {"snacks count by region": pl.col("category") == "snacks",
           "count by age_band 2024+": pl.col("year") >= 2024}


def exact_answer(table, name: str) -> dict:
    sql, agg = QUERIES[name]
    by = list(parse(sql, 1.0).query.group_by)
    frame = table.frame.filter(FILTERS[name]) if name in FILTERS else table.frame
    rows = frame.group_by(by).agg(agg.alias("v")).collect().iter_rows()
    return {r[:-1]: r[-1] for r in rows}


def parse(sql: str, eps: float, auto: bool = False):
    return parse_body({"sql": sql, "epsilon": eps, **({"bounds": "auto"} if auto else {})})


def relative_error(rows: list[dict], exact: dict, by: list[str]) -> float:
    errs = [abs((r["v"] or 0.0) - exact[tuple(r[b] for b in by)]) / exact[tuple(r[b] for b in by)]
            for r in rows if exact.get(tuple(r[b] for b in by))]
    return statistics.mean(errs)


def bias_at(table, plan, exact: dict) -> float:
    """Mean relative |exact bounded − exact| of the plan's value statistic."""
    part = plan.bounded[0]
    bounded = engines.aggregate(table.engine, table, part)
    cell = part.cells[0].name
    unit = plan.stats[0].stat.unit
    by = list(part.by)
    values = {tuple(r[b] for b in by): r[cell] * unit for r in bounded.iter_rows(named=True)}
    return statistics.mean(abs(values.get(k, 0) - v) / v for k, v in exact.items() if v)


def run(table, name: str, eps: float, reps: int) -> list[dict]:
    sql, _agg = QUERIES[name]
    exact = exact_answer(table, name)
    by = list(parse(sql, eps).query.group_by)
    out = []
    for label, auto in (("configured", False), ("auto", True)):
        request = parse(sql, eps, auto)
        plan = planner.build(request, catalog.check_query(request.query, {"purchases": table}))
        errors, chosen, seconds = [], Counter(), []
        for _ in range(reps):
            start = time.perf_counter()
            answer = release_answer(plan)
            seconds.append(time.perf_counter() - start)
            errors.append(relative_error(answer["rows"], exact, by))
            chosen[answer["bounds"]["rows_per_customer"]] += 1
        k = chosen.most_common(1)[0][0]
        at_k = autobound.at_bound(table, k)
        bias = bias_at(at_k, planner.build(parse(sql, eps), at_k), exact)
        out.append({"query": name, "bounds": label, "rel_error": statistics.mean(errors),
                    "rel_error_sd": statistics.stdev(errors) if reps > 1 else 0.0,
                    "k_chosen": dict(sorted(chosen.items())), "bias_at_mode_k": bias,
                    "seconds": statistics.median(seconds)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bench/out/data-1m")
    ap.add_argument("--eps", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--max", type=int, default=4000, help="auto_max_rows_per_customer")
    ap.add_argument("--engine", default="duckdb")
    ap.add_argument("--queries", default=",".join(QUERIES))
    ap.add_argument("--write", action="store_true", help="also write BENCHMARKS-autobound.md")
    args = ap.parse_args()
    settings = settings_for(Path(args.data), engine=args.engine,
                            bounds={"rows_per_customer": 200, "groups_per_customer": 2,
                                    "auto": True, "auto_max_rows_per_customer": args.max})
    prepared = Path(tempfile.gettempdir()) / "dpq-bench-autobound"
    table = catalog.open_table(settings.datasets["purchases"], prepared, settings.engine)
    print(f"data {args.data}, engine {args.engine}, eps={args.eps}, reps={args.reps}, "
          f"configured rows_per_customer=200, auto max {args.max}, auto_share "
          f"{table.dataset.auto_share}")
    print(f"{'query':30} {'bounds':11} {'mean rel err':>13} {'(sd)':>8} {'bias@k':>8} "
          f"{'s/query':>8}  k chosen (count)")
    results = []
    for name in args.queries.split(","):
        for r in run(table, name, args.eps, args.reps):
            results.append(r)
            print(f"{r['query']:30} {r['bounds']:11} {r['rel_error']:13.2%} "
                  f"{r['rel_error_sd']:8.2%} {r['bias_at_mode_k']:8.2%} {r['seconds']:8.2f}  "
                  f"{r['k_chosen']}")
    if args.write:
        (ROOT / "BENCHMARKS-autobound.md").write_text(markdown(args, table, results))


def markdown(args, table, results: list[dict]) -> str:
    """The table as BENCHMARKS-autobound.md: what was run, and its figures."""
    lines = ["# `\"bounds\": \"auto\"`: error against the exact answer\n",
             "Generated by `bench/bench_autobound.py`; do not edit by hand. Regenerate with:\n",
             f"```\npython -m bench.bench_autobound {' '.join(sys.argv[1:])}\n```\n",
             f"Data `{args.data}` ({table.frame.select(pl.len()).collect().item():,} prepared "
             f"rows), engine {args.engine}, ε = {args.eps:g} per query, {args.reps} fresh "
             f"answers per row; configured `rows_per_customer` = 200; auto up to {args.max} "
             f"rows, `auto_share` = {table.dataset.auto_share:g}. Python "
             f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}.\n",
             "*mean rel. error*: mean over answers of the mean over groups of |answer − exact| "
             "/ exact (exact: no bounding). *bias at k*: the exact bounded answer at the bound "
             "chosen most often vs exact, what the bound alone costs.\n",
             "| query | bounds | mean rel. error | sd | bias at k | s per answer | bounds chosen "
             "(times) |", "|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        chosen = ", ".join(f"{k}: {n}" for k, n in r["k_chosen"].items())
        lines.append(f"| {r['query']} | {r['bounds']} | {r['rel_error']:.1%} | "
                     f"{r['rel_error_sd']:.1%} | {r['bias_at_mode_k']:.1%} | "
                     f"{r['seconds']:.2f} | {chosen} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
