"""Shared harness for the peer runners (bench/peers/run_<peer>.py).

Each runner imports only this module plus its own library, so it runs in its
own virtual environment (see setup.sh).  Nothing here imports dpquery.

Protocol (issue 6):
  * privacy unit = customer (``customer_id``); every customer keeps at most
    R = 200 rows per query (after the public filters), amounts clamped to
    [0, 100]; for the distinct-customer queries (Q4, Q5) a customer is also
    limited to G = 1 group (region / region x age band).
  * before any query: keep opted_in = true, drop the 4 sensitive categories.
  * epsilon = 1.0 per query, pure DP where the peer supports it.

Output: one JSON object on stdout (everything else goes to stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
from typing import Any, Callable

REGIONS = ["Washtenaw", "Wayne", "Oakland", "Macomb", "Monroe", "Lenawee",
           "Jackson", "Livingston", "Ingham", "Hillsdale", "Calhoun", "Kalamazoo"]
AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
CATEGORIES = ["produce", "dairy", "bakery", "meat", "seafood", "snacks",
              "beverages", "frozen", "health_food", "household", "baby",
              "personal_care"]
SENSITIVE = ["pharmacy", "alcohol", "tobacco", "prophylactics"]

R = 200                 # max rows per customer per query
G = 1                   # max groups per customer for Q4/Q5 (distinct counts)
LOWER, UPPER = 0.0, 100.0   # clamp for amount

QUERIES = {
    "Q1": "purchases (rows) per region",
    "Q2": "total amount per region for category='snacks'",
    "Q3": "mean amount per region",
    "Q4": "distinct customers per region and age band",
    "Q5": "share of the region's customers who bought snacks at least once",
}
GROUP_KEYS = {"Q1": ["region"], "Q2": ["region"], "Q3": ["region"],
              "Q4": ["region", "age_band"], "Q5": ["region"]}


def parse_args(peer: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=f"peer benchmark runner: {peer}")
    p.add_argument("--data", required=True, help="folder of purchases *.parquet")
    p.add_argument("--query", required=True, choices=sorted(QUERIES))
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed repetitions after the first query")
    p.add_argument("--seed", type=int, default=None)
    return p.parse_args()


def parquet_files(data_dir: str) -> list[str]:
    files = sorted(os.path.join(data_dir, f) for f in os.listdir(data_dir)
                   if f.endswith(".parquet"))
    if not files:
        raise SystemExit(f"no *.parquet in {data_dir}")
    return files


def domain(query: str) -> list[dict]:
    """The public key-set (every group that must appear in the answer)."""
    if query == "Q4":
        return [{"region": r, "age_band": a} for r in REGIONS for a in AGE_BANDS]
    return [{"region": r} for r in REGIONS]


def fill_domain(query: str, rows: list[dict], fill=None) -> list[dict]:
    """Order rows by the public key-set; a group missing from `rows` gets `fill`."""
    keys = GROUP_KEYS[query]
    by_key = {tuple(r[k] for k in keys): r for r in rows}
    out = []
    for d in domain(query):
        k = tuple(d[c] for c in keys)
        r = by_key.get(k)
        out.append(dict(d, value=_num(r["value"]) if r is not None else fill,
                        **({x: _num(v) for x, v in r.items() if x not in keys and x != "value"}
                           if r is not None else {})))
    return out


def _num(v):
    """JSON-friendly number: numpy/pandas scalars -> int/float, NaN -> None."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if hasattr(v, "item"):          # numpy scalar
        v = v.item()
    if isinstance(v, float):
        return None if v != v else v
    if isinstance(v, int):
        return v
    try:
        f = float(v)
        return None if f != f else f
    except (TypeError, ValueError):
        return str(v)


class RssSampler:
    """Peak resident memory of this process plus its children (the JVM for
    pyspark), sampled every 50 ms; falls back to ru_maxrss without psutil."""

    def __init__(self, interval: float = 0.05):
        self.peak = 0
        self._stop = threading.Event()
        try:
            import psutil  # noqa: F401
            self._psutil = True
        except ImportError:
            self._psutil = False
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil
        me = psutil.Process()
        total = me.memory_info().rss
        for c in me.children(recursive=True):
            try:
                total += c.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._sample())
            except Exception:
                pass
            self._stop.wait(0.05)

    def start(self):
        if self._psutil:
            self._t.start()
        return self

    def stop_mb(self) -> float:
        self._stop.set()
        if self._psutil:
            self._t.join()
            try:
                self.peak = max(self.peak, self._sample())
            except Exception:
                pass
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return round(max(self.peak, own) / 2**20, 1)


def dist_version(*names: str) -> str:
    """'name X.Y.Z / other A.B' from installed distribution metadata."""
    from importlib.metadata import PackageNotFoundError, version
    out = []
    for n in names:
        try:
            out.append(f"{n} {version(n)}")
        except PackageNotFoundError:
            out.append(f"{n} ?")
    return " / ".join(out)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(peer: str, version: str, args: argparse.Namespace,
        setup: Callable[[], Any], one_rep: Callable[[Any, int], dict],
        supported: bool, note: str, import_seconds: float | None = None,
        extra: dict | None = None) -> None:
    """Time the peer and print the JSON report.

    setup()          -> state; loads/scans the data (counted in the first query).
    one_rep(state,i) -> {"rows": [ {keys..., value}, ... ], "scale_or_accuracy": ...}
                        builds the library's context/session on the data and
                        runs the query once (each rep spends a fresh epsilon).
    """
    out: dict[str, Any] = {
        "peer": peer, "version": version, "query": args.query,
        "query_text": QUERIES[args.query], "epsilon": args.epsilon,
        "R": R, "G": G, "bounds": [LOWER, UPPER],
        "supported": supported, "note": note,
        "first_query_seconds": None, "median_seconds": None,
        "rep_seconds": [], "peak_rss_mb": None, "results": [],
        "scale_or_accuracy": None,
    }
    if import_seconds is not None:
        out["import_seconds"] = round(import_seconds, 4)
    if extra:
        out.update(extra)
    sampler = RssSampler().start()
    if supported:
        try:
            t0 = time.perf_counter()
            state = setup()
            first = one_rep(state, 0)
            out["first_query_seconds"] = round(time.perf_counter() - t0, 4)
            out["scale_or_accuracy"] = first.get("scale_or_accuracy")
            for i in range(args.warmup):
                one_rep(state, 1 + i)
            times = []
            for i in range(args.reps):
                t = time.perf_counter()
                res = one_rep(state, 1 + args.warmup + i)
                times.append(time.perf_counter() - t)
                out["results"].append(res["rows"])
            out["rep_seconds"] = [round(t, 4) for t in times]
            out["median_seconds"] = round(statistics.median(times), 4) if times else None
            teardown = getattr(state, "close", None) if not isinstance(state, dict) else state.get("close")
            if callable(teardown):
                teardown()
        except Exception as e:  # report, don't crash the caller's loop
            import traceback
            traceback.print_exc(file=sys.stderr)
            out["error"] = f"{type(e).__name__}: {e}"
    out["peak_rss_mb"] = sampler.stop_mb()
    print(json.dumps(out, default=str))
    sys.stdout.flush()
