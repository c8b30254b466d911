"""Ledger throughput on both backends: reserve+commit pairs per second, 1 and 8 processes.

Run: python bench/bench_ledger.py [--ops 300] [--backend both|sqlite|postgresql] [--url URL]

Each process opens the same ledger and does ``--ops`` reserve+commit pairs
for one partner on one dataset (the contended case: every charge locks the
same partner and global-cap rows). SQLite: a temporary file (WAL,
synchronous=FULL). PostgreSQL: ``--url`` (a database to initialise), else a
throwaway cluster made with initdb/pg_ctl (fsync and synchronous_commit on,
as in production). The table shows wall-clock pairs per second and the
median and 99th percentile of one ``reserve`` call.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from budget import Amount, Ledger  # noqa: E402


def worker(location: str, partner: str, ops: int, prefix: str, start_at: float, out) -> None:
    ledger = Ledger(location, create=False)
    cost = Amount(epsilon=0.001)
    latencies = []
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(ops):
        t0 = time.perf_counter()
        r = ledger.reserve(partner, "purchases", cost, f"{prefix}-{i}", "SELECT COUNT(*)")
        latencies.append(time.perf_counter() - t0)
        ledger.commit(r.id)
    ledger.close()
    out.put(latencies)


def run(location: str, processes: int, ops: int) -> tuple[int, float, list[float]]:
    with Ledger(location) as ledger:
        pid, _ = ledger.create_partner(f"bench-{processes}", {"purchases": Amount(epsilon=10**5)},
                                       actor="bench")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0
    procs = [ctx.Process(target=worker, args=(location, pid, ops, f"p{n}", start_at, out))
             for n in range(processes)]
    for p in procs:
        p.start()
    latencies = [x for _ in procs for x in out.get()]
    for p in procs:
        p.join()
    elapsed = time.time() - start_at
    assert all(p.exitcode == 0 for p in procs)
    with Ledger(location, create=False) as ledger:
        charged = sum(1 for r in ledger.reservations(pid) if r.status == "COMMITTED")
        assert ledger.spent(pid, "purchases").epsilon * 1000 == charged
    assert charged == processes * ops
    return charged, elapsed, latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def bench(backend: str, location: str, ops: int) -> None:
    for processes in (1, 8):
        pairs, seconds, lat = run(location, processes, ops)
        print(f"{backend:>10}  {processes:>9}  {pairs:>6}  {seconds:>8.2f}  "
              f"{pairs / seconds:>8.0f}  {1000 * statistics.median(lat):>12.2f}  "
              f"{1000 * p99(lat):>12.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=300, help="reserve+commit pairs per process")
    parser.add_argument("--backend", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--url", help="PostgreSQL database to use (default: a throwaway cluster)")
    args = parser.parse_args()
    print(f"{'backend':>10}  {'processes':>9}  {'pairs':>6}  {'seconds':>8}  {'pairs/s':>8}  "
          f"{'reserve p50 ms':>12}  {'reserve p99 ms':>12}")
    if args.backend in ("both", "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            bench("sqlite", str(Path(tmp) / "ledger.db"), args.ops)
    if args.backend in ("both", "postgresql"):
        if args.url:
            bench("postgresql", args.url, args.ops)
            return
        from pg_helpers import Cluster
        cluster = Cluster(fsync=True)
        try:
            bench("postgresql", cluster.create_database(), args.ops)
        finally:
            cluster.destroy()


if __name__ == "__main__":
    main()
