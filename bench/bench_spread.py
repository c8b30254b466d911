"""VARIANCE per region on the engines: the squares cell vs OpenDP's polars path.

    python bench/bench_spread.py [--size 10m] [--engines duckdb,polars] [--reps 3]

`SELECT region, VARIANCE(amount) FROM purchases GROUP BY region` at ε=1: the
full answer (plan + bounded aggregation + OpenDP noise + interval), median of
`reps` after one warm-up, each engine in its own process (its own peak RSS).
On `duckdb` the three sums are DuckDB's exact cells with OpenDP's vector noise;
on `polars` (and on every engine before the squares cell) the release runs
inside OpenDP's polars plan. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SQL = "SELECT region, VARIANCE(amount) AS v FROM purchases GROUP BY region"


def child(data: str, engine: str, reps: int) -> dict:
    from bench.bench_engines import _open, _peak_mib, _timed
    from dpquery.engine import catalog, execute, plan as planner
    from dpquery.engine.request import parse_body
    table = _open(data, engine)
    where = {}

    def answer(i: int):
        request = parse_body({"sql": SQL, "epsilon": 1.0 + i / 1000})  # a new plan each time
        plan = planner.build(request, catalog.check_query(request.query, {"purchases": table}))
        where["path"] = "engine cells" if plan.bounded[0] is not None and engine != "polars" \
            else "OpenDP polars plan"
        return execute.answer_rows(plan, execute.release(plan))

    result = _timed(answer, reps)
    return {**result, "path": where["path"], "peak_mib": _peak_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="10m")
    parser.add_argument("--engines", default="duckdb,polars")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return
    data = ROOT / "bench" / "out" / f"data-{args.size}"
    print(f"{SQL} at eps=1 on {data.name}, median of {args.reps}")
    for engine in args.engines.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", str(data), engine, str(args.reps)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"  {engine}: failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {engine:7s} {r['seconds']:7.2f} s  peak {r['peak_mib']:8.0f} MiB  ({r['path']})")


if __name__ == "__main__":
    main()
