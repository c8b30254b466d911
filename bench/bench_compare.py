"""Compare dpquery with OpenDP Context, SmartNoise SQL, Tumult Analytics and plain polars.

    python bench/bench_compare.py [--sizes 1m,10m] [--reps 50] [--peer-reps 5] [--quick]

One command regenerates BENCHMARKS.md and bench/plots/*.png:

1. latency per query relative to plain polars (same bounded query, no noise)
   at each size: median after warm-up and first-query cost;
2. error at equal spend (ε = 1 per query) against the exact answer and the
   exact contribution-bounded answer, next to the error the noise scale
   predicts, at the smallest size (`--error-size`, default 1m);
3. budget efficiency on a scripted analyst session (accounting only);
4. the HTTP service figures (bench/bench_http.py);
5. peak memory per query at the largest size.

Every system runs in its own process through the same harness
(bench/peers/common.py): the peers in their venvs (bench/peers/setup.sh),
dpquery through bench/report/run_dpquery.py in this Python.  `--quick` is a
smoke run (small data, few reps).  Raw runner output goes to
bench/out/compare/*.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import metrics as M  # noqa: E402
from bench.report import render  # noqa: E402
from bench.report import session as S  # noqa: E402

SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
QUERIES = ["Q1", "Q2", "Q3", "Q4", "Q5"]
PEERS = ["opendp_context", "smartnoise_sql", "tmlt_analytics"]
SYSTEMS = ["plain_polars", "dpquery", *PEERS]
KEYS = {"Q1": ["region"], "Q2": ["region"], "Q3": ["region"], "Q4": ["region", "age_band"],
        "Q5": ["region"]}
VENVS = ROOT / "bench" / ".peers-venv"
OUT = ROOT / "bench" / "out" / "compare"
RUN_TIMEOUT = 1200  # seconds, one runner invocation


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def data_for(size: str) -> Path:
    out = ROOT / "bench" / "out" / f"data-{size}"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_data.py"), "--rows",
                    str(SIZES[size]), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def command(system: str, data: Path, query: str, eps: float, reps: int, warmup: int) -> list[str]:
    if system == "dpquery":
        py, script = sys.executable, ROOT / "bench" / "report" / "run_dpquery.py"
    else:
        py, script = VENVS / system / "bin" / "python", ROOT / "bench" / "peers" / f"run_{system}.py"
    return [str(py), str(script), "--data", str(data), "--query", query, "--epsilon", str(eps),
            "--reps", str(reps), "--warmup", str(warmup)]


def run_one(system: str, data: Path, query: str, eps: float, reps: int, warmup: int,
            tag: str) -> dict:
    """One runner invocation; its JSON lines merged into one dict (cached by tag)."""
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = command(system, data, query, eps, reps, warmup)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
        doc = {}
        for line in p.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                doc.update(json.loads(line))
        if not doc:
            doc = {"error": f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:] }"}
    except subprocess.TimeoutExpired:
        doc = {"error": f"timeout after {RUN_TIMEOUT} s"}
    doc["wall_seconds"] = round(time.perf_counter() - t0, 2)
    doc["system"] = system
    (OUT / f"{tag}.json").write_text(json.dumps(doc, default=str) + "\n")
    log(f"  {tag}: {doc['wall_seconds']} s"
        + (f"  median {doc.get('median_seconds')} s, first {doc.get('first_query_seconds')} s,"
           f" peak {doc.get('peak_rss_mb')} MB" if "error" not in doc else f"  ERROR {doc['error']}"))
    return doc


# -- plan of runs ------------------------------------------------------------------

def rep_plan(args) -> dict:
    """(warmup, reps) per (size role, system): the error size gets many dpquery reps."""
    if args.quick:
        return {"error": {s: (1, 3) for s in SYSTEMS} | {"dpquery": (1, 10)},
                "latency": {s: (1, 2) for s in SYSTEMS}}
    return {
        "error": {"plain_polars": (1, 3), "dpquery": (1, args.reps),
                  "opendp_context": (0, args.peer_reps), "smartnoise_sql": (0, args.peer_reps),
                  "tmlt_analytics": (0, min(args.peer_reps, 3))},
        # the largest size: the first query is the warm-up, then few timed reps
        "latency": {"plain_polars": (1, 5), "dpquery": (1, 5), "opendp_context": (0, 1),
                    "smartnoise_sql": (0, 0), "tmlt_analytics": (0, 1)},
    }


# at sizes other than the error size, these systems run only these queries
# (SmartNoise SQL copies the frame into SQLite per reader: ~2 min and ~11 GB
# per query at 10M rows here; Tumult takes minutes per query through Spark)
LATENCY_ONLY = {"smartnoise_sql": ["Q1"], "tmlt_analytics": ["Q1"]}


def run_all(args, sizes: list[str], error_size: str) -> dict:
    plan = rep_plan(args)
    runs: dict = {}
    for size in sizes:
        data = data_for(size)
        role = "error" if size == error_size else "latency"
        log(f"[{size}] {data} ({role} reps)")
        for q in QUERIES:
            for system in args.systems:
                if role == "latency" and not args.quick and q not in LATENCY_ONLY.get(system, QUERIES):
                    continue
                warmup, reps = plan[role][system]
                runs[(system, size, q)] = run_one(system, data, q, 1.0, reps, warmup,
                                                  f"{system}-{size}-{q}")
    return runs


def eps_sweep(args, size: str) -> dict:
    """dpquery's measured error for Q2 across ε (the peers' lines are scale/ε)."""
    data = data_for(size)
    out = {}
    for eps in ([0.25, 1.0, 2.0] if args.quick else [0.1, 0.25, 0.5, 1.0, 2.0]):
        out[eps] = run_one("dpquery", data, "Q2", eps, 5 if args.quick else 20, 1,
                           f"dpquery-{size}-Q2-eps{eps}")
    return out


# -- analysis ------------------------------------------------------------------------

def latency_rows(runs: dict, sizes: list[str], systems: list[str]) -> list[dict]:
    rows = []
    for size in sizes:
        for q in QUERIES:
            base = runs.get(("plain_polars", size, q), {})
            b_med, b_first = base.get("median_seconds"), base.get("first_query_seconds")
            for s in systems:
                if (s, size, q) not in runs:
                    continue
                d = runs[(s, size, q)]
                med, first = d.get("median_seconds"), d.get("first_query_seconds")
                rows.append({"size": size, "query": q, "system": s, "median_s": med,
                             "first_s": first, "peak_rss_mb": d.get("peak_rss_mb"),
                             "ratio": med / b_med if med and b_med else None,
                             "first_ratio": first / b_first if first and b_first else None,
                             "own_baseline_s": d.get("baseline_median_seconds"),
                             "plan_s": d.get("plan_median_seconds"),
                             "reps": len(d.get("rep_seconds") or []),
                             "error": d.get("error")})
    return rows


def error_rows(runs: dict, size: str, systems: list[str]) -> list[dict]:
    rows = []
    for q in QUERIES:
        keys = KEYS[q]
        base = runs.get(("plain_polars", size, q), {})
        if not base.get("results"):
            continue
        exact = M.keyed(base.get("exact_unbounded", []), keys)
        peer_bounded_rows = base["results"][0]
        q1_counts = M.keyed(runs.get(("plain_polars", size, "Q1"), {}).get("results", [[]])[0], ["region"])
        for s in systems:
            if s == "plain_polars":
                continue
            d = runs.get((s, size, q), {})
            if not d.get("results"):
                rows.append({"query": q, "system": s, "error": d.get("error", "no results")})
                continue
            bounded_rows = d.get("exact_bounded") or peer_bounded_rows
            if s == "dpquery" and q == "Q2":
                bounded_rows = _dollars(bounded_rows, exact)
            bounded = M.keyed(bounded_rows, keys)
            sc = M.scales(s, q, d.get("scale_or_accuracy"))
            counts = q1_counts
            if s == "dpquery" and q == "Q3":
                counts = runs.get(("dpquery", size, "Q1"), {})
                counts = M.keyed(counts.get("exact_bounded", []), ["region"]) or q1_counts
            pred = M.predicted_mae(s, q, sc, bounded_rows, keys, counts)
            e_exact = M.errors(d["results"], exact, keys)
            e_bnd = M.errors(d["results"], bounded, keys)
            rows.append({"query": q, "system": s, "reps": len(d["results"]),
                         "draws": e_bnd["draws"], "missing": e_bnd["missing"],
                         "mae_exact": e_exact["mae"], "rel_exact": e_exact["rel"],
                         "mae_bounded": e_bnd["mae"], "rel_bounded": e_bnd["rel"],
                         "predicted_mae": pred,
                         "scales": {k: v[0] for k, v in (sc or {}).items()},
                         "bias": _bias(bounded, exact)})
    return rows


def _dollars(rows: list[dict], exact: dict) -> list[dict]:
    """Runs made while bench_engine.baseline returned whole cents for Q2: back to USD
    (detected as a bounded total ~100x the exact one, which bounding cannot cause)."""
    ratios = [r["value"] / exact[(r["region"],)] for r in rows
              if r.get("value") and exact.get((r["region"],))]
    if ratios and statistics.median(ratios) > 20:
        return [dict(r, value=r["value"] / 100) for r in rows]
    return rows


def _bias(bounded: dict, exact: dict) -> float | None:
    """Mean |bounded - exact| over groups: what contribution bounding alone costs."""
    d = [abs(bounded[k] - exact[k]) for k in exact if bounded.get(k) is not None and exact[k] is not None]
    return statistics.fmean(d) if d else None


def sweep_rows(sweep: dict, runs: dict, size: str) -> list[dict]:
    base = runs.get(("plain_polars", size, "Q2"), {})
    if not base.get("results"):
        return []
    out = []
    for eps, d in sweep.items():
        if not d.get("results"):
            continue
        e = M.errors(d["results"], M.keyed(d.get("exact_bounded", []), ["region"]), ["region"])
        sc = M.scales("dpquery", "Q2", d.get("scale_or_accuracy"))
        out.append({"epsilon": eps, "mae_bounded": e["mae"], "draws": e["draws"],
                    "predicted_mae": sc["value"][0] if sc else None})
    return out


def budget_analysis(data: Path, budget: float = 10.0) -> dict:
    """dpquery's spend per session query from Service.preview; peers' from their bounds."""
    from budget.amounts import Amount
    from budget.ledger import Ledger
    from bench.common import settings_for
    from dpquery.errors import DPQueryError
    from dpquery.service import Service

    settings = settings_for(data)
    service = Service.open(settings)
    session = S.make_session()
    cost_of: dict = {}
    why: dict = {}
    dp_costs, fixed_costs = [], []
    refused: dict = {}

    def preview_cost(sql: str, agg: str):
        body = {"sql": sql, "accuracy": S.TARGETS[agg]}
        key = json.dumps(body, sort_keys=True)
        if key not in cost_of:
            try:
                cost_of[key] = float(service.preview(body)["cost"]["epsilon"])
            except DPQueryError as exc:
                cost_of[key] = None
                why[key] = ("unsupported" if "cannot be made private" in exc.message
                            else "accuracy_unreachable")
        return key, cost_of[key]

    for q in session:
        key, c = preview_cost(q["sql"], q["agg"])
        if c is None:
            refused[why[key]] = refused.get(why[key], 0) + 1
        dp_costs.append((key, c))
        # what it would cost if AND-ed filters were accepted: the spend does not
        # depend on the filter, so preview the query with its first filter only
        fc = c
        if c is None and why[key] == "unsupported" and len(q["where"]) > 1:
            _k, fc = preview_cost(S.sql_of(dict(q, where=q["where"][:1])), q["agg"])
        fixed_costs.append((key, fc))
    cap = settings.datasets["purchases"].max_epsilon_per_query
    peer_costs = {}
    for p in PEERS:
        cs = []
        for q in session:
            e = S.peer_epsilon(p, q["agg"], bool(q["by"]))
            cs.append((None, e if e <= cap else None))
        peer_costs[p] = cs
    budgets = [0.5 * i for i in range(0, 61)]
    curves = {"dpquery": [S.answered(dp_costs, b) for b in budgets],
              "dpquery_fixed": [S.answered(fixed_costs, b) for b in budgets]}
    curves |= {p: [S.answered(c, b) for b in budgets] for p, c in peer_costs.items()}
    per_kind = {a: {"dpquery": None} for a in S.AGGS}
    for q in session:
        body = {"sql": q["sql"], "accuracy": S.TARGETS[q["agg"]]}
        c = cost_of[json.dumps(body, sort_keys=True)]
        cur = per_kind[q["agg"]].setdefault("dpquery_costs", set())
        cur.add(c)
    for a in S.AGGS:
        for p in PEERS:
            per_kind[a][p] = sorted({S.peer_epsilon(p, a, g) for g in (True, False)})
        per_kind[a]["dpquery"] = sorted(x for x in per_kind[a].pop("dpquery_costs", set()) if x is not None)
    verify = _verify_repeats(settings, service, session)
    service.ledger.close()
    return {"n": len(session), "steps": _count(q["step"] for q in session),
            "distinct": len({q["sql"] for q in session}), "budget": budget, "cap": cap,
            "answered": {s: S.answered(c, budget) for s, c in
                         {"dpquery": dp_costs, "dpquery_fixed": fixed_costs, **peer_costs}.items()},
            "spent_all": {"dpquery": _total(dp_costs), "dpquery_fixed": _total(fixed_costs),
                          **{p: _total(cs) for p, cs in peer_costs.items()}},
            "refused": {"dpquery": refused,
                        "dpquery_fixed": {"accuracy_unreachable": sum(c is None for _k, c in fixed_costs)},
                        **{p: {"accuracy_unreachable": sum(c is None for _k, c in cs)} for p, cs in peer_costs.items()}},
            "and_filters": sum(len(q["where"]) > 1 for q in session),
            "budgets": budgets, "curves": curves, "per_kind": per_kind, "verify": verify,
            "targets": S.TARGETS, "examples": [(q["step"], q["sql"]) for q in session[:12]]}


def _total(entries) -> float:
    """ε to answer every answerable query once in order (cached keys free)."""
    seen, total = set(), 0.0
    for key, c in entries:
        if c is None or (key is not None and key in seen):
            continue
        total += c
        if key is not None:
            seen.add(key)
    return total


def _count(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _verify_repeats(settings, service, session) -> dict:
    """Once, for real: a repeat through Service.run is answered from the store at no cost."""
    from budget.amounts import Amount
    pid, _key = service.ledger.create_partner("verify", {"purchases": Amount(epsilon=10)}, None,
                                              ["bench"], actor="bench", reason="verify repeats")
    q = next(q for q in session if q["agg"] == "count")
    body = {"sql": q["sql"], "accuracy": S.TARGETS["count"]}
    first = service.run(pid, body)
    again = service.run(pid, body)
    return {"sql": q["sql"], "first_charged": first["charged"], "first_remaining": first["remaining"]["text"],
            "repeat": again["repeat"], "repeat_charged": again["charged"],
            "repeat_remaining": again["remaining"]["text"],
            "same_rows": first["rows"] == again["rows"]}


# -- machine and versions ------------------------------------------------------------

def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {"nproc": os.cpu_count(), "memory": mem, "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release(), "load_before": os.getloadavg()}


def versions() -> dict:
    from importlib.metadata import version
    out = {"dpquery": {n: version(n) for n in ("opendp", "polars")}}
    vt = ROOT / "bench" / "peers" / "VERSIONS.txt"
    out["peers_versions_txt"] = vt.read_text() if vt.exists() else "(missing)"
    return out


def http_figures(args) -> dict | None:
    if args.http_json and Path(args.http_json).exists() and not args.run_http:
        return json.loads(Path(args.http_json).read_text())
    if args.skip_http:
        return None
    out = OUT / "http.json"
    sizes = "1m" if args.quick else ",".join(s for s in args.sizes.split(",") if s in ("1m", "10m"))
    cmd = [sys.executable, str(ROOT / "bench" / "bench_http.py"), "--sizes", sizes or "1m",
           "--clients", "1,8,32", "--seconds", "3" if args.quick else "10", "--json", str(out)]
    log("[http] " + " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, timeout=1800)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1m,10m")
    ap.add_argument("--reps", type=int, default=50, help="dpquery reps at the error size")
    ap.add_argument("--peer-reps", type=int, default=5,
                    help="reps of the slow peers at the error size (each rep = 12 or 72 draws)")
    ap.add_argument("--error-size", default=None, help="size for the error table (default: smallest)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 100k rows, few reps")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--http-json", default=None, help="reuse bench_http.py output instead of running it")
    ap.add_argument("--run-http", action="store_true")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--plots", type=Path, default=ROOT / "bench" / "plots")
    ap.add_argument("--render-only", action="store_true",
                    help="redraw BENCHMARKS.md and plots from bench/out/compare/report.json")
    args = ap.parse_args()
    if args.render_only:
        report = json.loads((OUT / "report.json").read_text())
        report = reanalyse(report, args)
        args.plots.mkdir(parents=True, exist_ok=True)
        render.plots(report, args.plots)
        args.out.write_text(render.markdown(report, args.plots))
        return
    if args.quick and args.sizes == "1m,10m":
        args.sizes = "100k,1m"
    args.systems = [s for s in args.systems.split(",") if s]
    if "plain_polars" not in args.systems:
        args.systems.insert(0, "plain_polars")
    sizes = args.sizes.split(",")
    error_size = args.error_size or sizes[0]
    started = time.perf_counter()
    info = {"machine": machine(), "versions": versions(),
            "command": "python " + " ".join(shlex.quote(a) for a in
                                            [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
            "sizes": sizes, "error_size": error_size, "rep_plan": rep_plan(args),
            "rows": {s: json.loads((data_for(s) / "_summary.json").read_text())["rows"] for s in sizes}}
    runs = run_all(args, sizes, error_size)
    sweep = eps_sweep(args, error_size)
    log("[budget] session accounting")
    budget = budget_analysis(data_for(error_size))
    http = http_figures(args)
    info["runtime_s"] = round(time.perf_counter() - started, 1)
    report = analyse(info, runs, sweep, budget, http, args)
    (OUT / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    args.plots.mkdir(parents=True, exist_ok=True)
    render.plots(report, args.plots)
    args.out.write_text(render.markdown(report, args.plots))
    log(f"wrote {args.out} and plots in {args.plots} ({info['runtime_s']} s)")


def reanalyse(report: dict, args) -> dict:
    """Recompute the tables from the raw runner files of the last run (no re-running)."""
    info = report["info"]
    runs, sweep = {}, {}
    for path in sorted(OUT.glob("*.json")):
        parts = path.stem.split("-")
        if len(parts) == 3 and parts[1] in info["sizes"]:
            runs[(parts[0], parts[1], parts[2])] = json.loads(path.read_text())
        elif len(parts) == 4 and parts[3].startswith("eps") and parts[1] == info["error_size"]:
            sweep[float(parts[3][3:])] = json.loads(path.read_text())
    args.systems = [s for s in SYSTEMS if any(k[0] == s for k in runs)]
    return analyse(info, runs, dict(sorted(sweep.items())), report["budget"], report["http"], args)


def analyse(info, runs, sweep, budget, http, args) -> dict:
    error_size = info["error_size"]
    sizes = info["sizes"]
    return {
        "info": info,
        "latency": latency_rows(runs, sizes, args.systems),
        "errors": error_rows(runs, error_size, args.systems),
        "sweep": sweep_rows(sweep, runs, error_size),
        "sweep_peers": {s: M.scales(s, "Q2", runs.get((s, error_size, "Q2"), {}).get("scale_or_accuracy"))
                        for s in PEERS if s in args.systems},
        "peer_q2_measured": {s: M.errors(runs[(s, error_size, "Q2")].get("results") or [],
                                         M.keyed(runs[("plain_polars", error_size, "Q2")].get("results", [[]])[0], ["region"]),
                                         ["region"])
                             for s in PEERS if (s, error_size, "Q2") in runs},
        "budget": budget,
        "http": http,
        "notes": {f"{s}-{size}-{q}": d.get("note") for (s, size, q), d in runs.items() if size == error_size},
    }


if __name__ == "__main__":
    main()
