"""HTTP benchmark: the real `dpquery serve` under concurrent partner clients.

    python bench/bench_http.py [--sizes 1m,10m] [--clients 1,8,32] [--seconds 10]
                               [--workers 3] [--json bench/out/http.json]

For each data size (bench/make_data.py folders bench/out/data-<size>) it
writes a temporary config (config.toml with the data path, a throwaway ledger,
a free port on 127.0.0.1, rate limiting off), creates a partner with a huge
budget in that ledger, starts `dpquery serve` as a subprocess on 127.0.0.1
only, waits for /healthz, and then, for each client count N, runs N threads
(one requests.Session each) for a bounded time and request count:

  fresh   every request is a new query (the epsilon differs by 1e-6 each time,
          cycling through a few query shapes), so each one is planned, charged
          in the ledger and released with fresh noise;
  repeat  the same query again and again: the service returns the stored
          answer (no noise, no charge).

It reports p50/p99 latency and throughput (req/s) per (size, kind, clients),
prints a markdown table and writes JSON.  The server is always stopped
(SIGTERM, then SIGKILL) in a `finally`.

Caveat: fresh answers are padded by the server to a multiple of 50 ms from
the start of the request (a timing side channel defence, dpquery/api.py), so
fresh latency is floored at 50 ms and quantised in 50 ms steps.  The client
threads run on the same 2 cores as the server (loopback only), so the figures
include client overhead; compare ratios within one run.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import tomlw  # noqa: E402
from budget.amounts import Amount  # noqa: E402
from budget.ledger import Ledger  # noqa: E402

SIZES = {"1m": 1_000_000, "10m": 10_000_000}
HOST = "127.0.0.1"
# fresh queries cycle through these shapes; each request gets its own epsilon
FRESH_SQL = [
    "SELECT region, COUNT(*) FROM purchases GROUP BY region",
    "SELECT region, SUM(amount) FROM purchases WHERE category = 'snacks' GROUP BY region",
    "SELECT region, COUNT(DISTINCT customer_id) FROM purchases GROUP BY region",
    "SELECT region, PURCHASE_RATE(category = 'snacks') AS r FROM purchases GROUP BY region",
]
REPEAT_SQL = "SELECT region, COUNT(*) FROM purchases WHERE year >= 2020 GROUP BY region"
MAX_REQUESTS_PER_CELL = 20_000  # hard cap per (size, kind, clients), whatever the time


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def data_for(size: str) -> Path:
    out = ROOT / "bench" / "out" / f"data-{size}"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_data.py"), "--rows",
                    str(SIZES[size]), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def write_config(tmp: Path, data: Path, port: int, workers: int) -> Path:
    raw = copy.deepcopy(tomllib.loads((ROOT / "config.toml").read_text()))
    raw["server"].update(host=HOST, port=port, workers=workers, rate_limit_per_minute=0)
    raw["ledger"]["path"] = str(tmp / "ledger.db")
    ds = raw["datasets"]["purchases"]
    ds["path"] = str(data)
    ds["max_epsilon_per_query"] = max(float(ds.get("max_epsilon_per_query", 1.0)), 2.0)
    path = tmp / "config.toml"
    path.write_text(tomlw.dumps(raw))
    return path


def make_partner(ledger_path: Path) -> str:
    with Ledger(ledger_path) as ledger:
        _pid, key = ledger.create_partner(
            "bench", budgets={"purchases": Amount(epsilon=1_000_000)}, per_query_cap=None,
            purposes=["bench"], actor="bench", reason="bench")
    return key


class Server:
    """`dpquery serve` in a subprocess (own process group), stopped in `stop()`."""

    def __init__(self, config: Path, port: int, workers: int, log: Path):
        self.url = f"http://{HOST}:{port}"
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dpquery.cli", "--config", str(config), "serve",
             "--host", HOST, "--port", str(port), "--workers", str(workers)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).ok:
                    return time.monotonic() - t0
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.log.close()


class FreshBodies:
    """Thread-safe supply of never-repeated request bodies."""

    def __init__(self, offset: int):
        self.lock = threading.Lock()
        self.i = offset

    def next(self) -> dict:
        with self.lock:
            self.i += 1
            i = self.i
        return {"sql": FRESH_SQL[i % len(FRESH_SQL)], "epsilon": round(0.5 + i * 1e-6, 7)}


def measure(url: str, key: str, clients: int, seconds: float, body_for, max_requests: int) -> dict:
    """N threads, each looping until the deadline or the shared request cap."""
    headers = {"Authorization": f"Bearer {key}"}
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    budget = [max_requests]
    start = time.perf_counter()
    deadline = start + seconds

    def worker():
        s = requests.Session()
        try:
            while time.perf_counter() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                body = body_for()
                t0 = time.perf_counter()
                try:
                    r = s.post(url + "/v1/queries", json=body, headers=headers, timeout=300)
                    ok = r.status_code == 200
                    text = "" if ok else f"{r.status_code} {r.text[:200]}"
                except requests.RequestException as exc:
                    ok, text = False, repr(exc)[:200]
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        lat.append(dt)
                    else:
                        errors.append(text)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 600)
    wall = time.perf_counter() - start
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")  # noqa: E731
    return {"requests": len(lat), "errors": len(errors), "first_error": errors[0] if errors else None,
            "wall_s": round(wall, 3), "throughput_rps": round(len(lat) / wall, 2) if wall else None,
            "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
            "p99_ms": round(q(0.99) * 1000, 1) if lat else None,
            "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None}


def bench_size(size: str, clients: list[int], seconds: float, workers: int) -> list[dict]:
    data = data_for(size)
    tmp = Path(tempfile.mkdtemp(prefix=f"dpq-http-{size}-"))
    port = free_port()
    config = write_config(tmp, data, port, workers)
    key = make_partner(tmp / "ledger.db")
    server = Server(config, port, workers, tmp / "server.log")
    rows = []
    try:
        ready = server.wait_ready()
        print(f"[{size}] server up in {ready:.1f} s ({workers} workers, {server.url})",
              file=sys.stderr, flush=True)
        headers = {"Authorization": f"Bearer {key}"}
        # warm every worker (first query opens the scan, imports, plans), and
        # store the repeat answer once
        with requests.Session() as s:
            for i in range(workers * 2):
                s.post(server.url + "/v1/queries", headers=headers, timeout=300,
                       json={"sql": FRESH_SQL[i % len(FRESH_SQL)], "epsilon": 0.4 + i * 1e-6})
            r = s.post(server.url + "/v1/queries", headers=headers, timeout=300,
                       json={"sql": REPEAT_SQL, "epsilon": 0.5})
            r.raise_for_status()
        fresh = FreshBodies(offset=0)
        for kind in ("fresh", "repeat"):
            for n in clients:
                body_for = fresh.next if kind == "fresh" else \
                    (lambda: {"sql": REPEAT_SQL, "epsilon": 0.5})
                res = measure(server.url, key, n, seconds, body_for, MAX_REQUESTS_PER_CELL)
                res.update(size=size, kind=kind, clients=n, workers=workers)
                rows.append(res)
                print(f"[{size}] {kind:6s} clients={n:3d}: {res['requests']} ok, "
                      f"{res['errors']} errors, p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
                      f"{res['throughput_rps']} req/s", file=sys.stderr, flush=True)
                if res["first_error"]:
                    print(f"  first error: {res['first_error']}", file=sys.stderr)
    finally:
        server.stop()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| rows | kind | clients | requests | errors | p50 ms | p99 ms | req/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['kind']} | {r['clients']} | {r['requests']} | "
                     f"{r['errors']} | {r['p50_ms']} | {r['p99_ms']} | {r['throughput_rps']} |")
    return "\n".join(lines)


def run(sizes: list[str], clients: list[int], seconds: float, workers: int) -> list[dict]:
    rows = []
    for size in sizes:
        rows += bench_size(size, clients, seconds, workers)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,10m")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "http.json")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    rows = run(args.sizes.split(","), clients, args.seconds, args.workers)
    print(f"\n## HTTP service ({args.workers} gunicorn workers, {args.seconds:g} s per cell)\n")
    print(table(rows))
    print("\nFresh answers are padded to a multiple of 50 ms (timing side-channel defence).")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seconds": args.seconds, "workers": args.workers,
                                     "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
