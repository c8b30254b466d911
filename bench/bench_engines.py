"""Engines benchmark: DP answers on each engine vs DuckDB's plain unbounded query.

    python bench/bench_engines.py [--sizes 10m,100m] [--engines duckdb,polars] [--reps 3] [--write]

For each data size: the one-time prepare (time, peak RSS), then the five
queries of BENCHMARKS.md, interleaved in one run: DuckDB's plain query over the
raw files (consent and exclusions applied, no bounding, no noise) and dpquery's
full answer (plan + bounded aggregation + OpenDP noise + post-processing) on
each engine. Every measurement runs in its own process, so its peak RSS is its
own; the time is the median of `reps` answers after one warm-up in that
process. Then preview (plan only) and repeat (stored answer) latency.
Prints a Markdown table; 'x plain' is the ratio to DuckDB's plain query.
With --write, also writes BENCHMARKS-engines.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"1m": 1_000_000, "10m": 10_000_000, "100m": 100_000_000, "1b": 1_000_000_000}
QUERIES = {
    "purchases per region": "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region",
    "snack spend per region": "SELECT region, SUM(amount) AS s FROM purchases "
                              "WHERE category = 'snacks' GROUP BY region",
    "mean amount per region": "SELECT region, AVG(amount) AS m FROM purchases GROUP BY region",
    "customers per region x age": "SELECT region, age_band, COUNT(DISTINCT customer_id) AS c "
                                  "FROM purchases GROUP BY region, age_band",
    "snack rate per region x age": "SELECT region, age_band, PURCHASE_RATE(category = 'snacks') "
                                   "AS r FROM purchases GROUP BY region, age_band",
}
KEEP = ("opted_in AND category NOT IN ('pharmacy', 'alcohol', 'tobacco', 'prophylactics')")
PLAIN = {  # the same questions, unbounded, in DuckDB over the raw files
    "purchases per region": f"SELECT region, count(*) FROM raw WHERE {KEEP} GROUP BY region",
    "snack spend per region": f"SELECT region, sum(amount) FROM raw WHERE {KEEP} "
                              "AND category = 'snacks' GROUP BY region",
    "mean amount per region": f"SELECT region, avg(amount) FROM raw WHERE {KEEP} GROUP BY region",
    "customers per region x age": f"SELECT region, age_band, count(DISTINCT customer_id) FROM raw "
                                  f"WHERE {KEEP} GROUP BY region, age_band",
    "snack rate per region x age": "SELECT region, age_band, count(DISTINCT customer_id) FILTER "
                                   "(WHERE category = 'snacks') / count(DISTINCT customer_id) "
                                   f"FROM raw WHERE {KEEP} GROUP BY region, age_band",
}


def data_for(size: str) -> Path:
    out = ROOT / "bench" / "out" / f"data-{size}"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_data.py"), "--rows",
                    str(SIZES[size]), "--out", str(out)], check=True)
    return out


def prepared_dir() -> Path:
    return ROOT / "bench" / "out" / "prepared"


# -- measurements, each run in a child process (`--child KIND ...`) -------------

def _peak_mib() -> float:
    """This process's peak RSS (VmHWM; getrusage would keep a parent's peak across exec)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def _open(data: str, engine: str):
    from bench.common import settings_for
    from dpquery.engine import catalog
    rows = next(n for size, n in SIZES.items() if Path(data).name == f"data-{size}")
    settings = settings_for(Path(data), engine=engine, max_rows=2 * rows)  # a public bound
    return catalog.open_table(settings.datasets["purchases"], prepared_dir(),
                              {**settings.engine, "spill_dir": prepared_dir() / "spill"})


def child_prepare(data: str) -> dict:
    start = time.perf_counter()
    table = _open(data, "duckdb")
    rows = table.frame.select(__import__("polars").len()).collect().item()
    return {"seconds": time.perf_counter() - start, "rows": rows}


def child_dp(data: str, engine: str, name: str, reps: int) -> dict:
    from dpquery.engine import catalog, execute, plan as planner
    from dpquery.engine.request import parse_body
    table = _open(data, engine)

    def answer(eps: float):
        request = parse_body({"sql": QUERIES[name], "epsilon": eps})
        plan = planner.build(request, catalog.check_query(request.query, {"purchases": table}))
        return execute.answer_rows(plan, execute.release(plan))

    return _timed(lambda i: answer(1.0 + i / 1000), reps)


def child_plain(data: str, name: str, reps: int) -> dict:
    import duckdb
    con = duckdb.connect(config={"memory_limit": "4GB"})
    con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet('{data}/*.parquet')")
    return _timed(lambda i: con.execute(PLAIN[name]).fetchall(), reps)


def child_preview(data: str, reps: int) -> dict:
    from dpquery.engine import catalog, plan as planner
    from dpquery.engine.request import parse_body
    table = _open(data, "duckdb")
    sqls = list(QUERIES.values())

    def preview(i):
        request = parse_body({"sql": sqls[i % len(sqls)], "epsilon": 1.0})
        planner.build(request, catalog.check_query(request.query, {"purchases": table}))
    return _timed(preview, reps)


def _timed(fn, reps: int) -> dict:
    fn(0)  # warm-up: connection, first plan, file metadata
    times = []
    for i in range(reps):
        start = time.perf_counter()
        fn(i + 1)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times)}


def run_child(*args) -> dict:
    """One measurement in a fresh process: its result plus its own peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- tables ----------------------------------------------------------------------

OUT: list[str] = []


def emit(line: str = "") -> None:
    print(line, flush=True)
    OUT.append(line)


def size_table(size: str, engines: list[str], reps: int) -> None:
    data = data_for(size)
    prep = run_child("prepare", data)
    emit(f"\n## {size} rows: prepare {prep.get('seconds', float('nan')):.1f} s, "
          f"peak RSS {prep.get('peak_mib', float('nan')):.0f} MiB, "
          f"{prep.get('rows', 0):,} prepared rows {prep.get('error', '')}\n")
    head = " | ".join(f"{e} s | {e} x plain | {e} MiB" for e in engines)
    emit(f"| query | plain DuckDB s | plain MiB | {head} |")
    emit("|---|---:|---:|" + "---:|---:|---:|" * len(engines))
    for name in QUERIES:
        plain = run_child("plain", data, name, reps)
        cells = []
        for engine in engines:
            r = run_child("dp", data, engine, name, reps)
            if "error" in r:
                cells.append(f"failed: {r['error'][:60]} | | ")
                continue
            cells.append(f"{r['seconds']:.2f} | {r['seconds'] / plain['seconds']:.2f}x | "
                         f"{r['peak_mib']:.0f}")
        emit(f"| {name} | {plain['seconds']:.2f} | {plain['peak_mib']:.0f} | {' | '.join(cells)} |")
    pv = run_child("preview", data, reps * 10)
    emit(f"\npreview (plan only, no data): {pv['seconds'] * 1000:.1f} ms median")


def child_main(argv: list[str]) -> None:
    kind, rest = argv[0], argv[1:]
    if kind == "prepare":
        result = child_prepare(rest[0])
    elif kind == "dp":
        result = child_dp(rest[0], rest[1], rest[2], int(rest[3]))
    elif kind == "plain":
        result = child_plain(rest[0], rest[1], int(rest[2]))
    else:
        result = child_preview(rest[0], int(rest[1]))
    print(json.dumps({**result, "peak_mib": _peak_mib()}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10m,100m")
    parser.add_argument("--engines", default="duckdb,polars")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="also write BENCHMARKS-engines.md")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in __import__("os").getloadavg())
    emit(f"Load average before the run: {load} (2 cores, shared: compare ratios within a run).")
    for size in args.sizes.split(","):
        size_table(size, args.engines.split(","), args.reps)
    if args.write:
        command = "python bench/bench_engines.py " + " ".join(sys.argv[1:])
        header = ["# dpquery engines benchmark", "",
                  f"Generated by `{command}`; do not edit by hand.", "",
                  "Each cell: median of the reps after one warm-up, in its own process (peak RSS "
                  "is that process's VmHWM). 'plain DuckDB' answers the same question with no "
                  "bounding and no noise over the raw files; 'x plain' is dpquery's time over it.", ""]
        (ROOT / "BENCHMARKS-engines.md").write_text("\n".join(header + OUT) + "\n")


if __name__ == "__main__":
    main()
