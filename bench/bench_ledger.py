"""Ledger throughput: reserve + commit pairs per second, 1 and 8 processes.

Run: python bench/bench_ledger.py [--ops 400]
Each process opens the same temporary SQLite file (WAL, synchronous=FULL) and
does ``--ops`` reserve+commit pairs; the table shows wall-clock throughput.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from budget import Amount, Ledger  # noqa: E402


def worker(db: str, partner: str, ops: int, prefix: str, start_at: float) -> None:
    ledger = Ledger(db)
    cost = Amount(epsilon=0.001)
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(ops):
        r = ledger.reserve(partner, "purchases", cost, f"{prefix}-{i}", "SELECT COUNT(*)")
        ledger.commit(r.id)


def run(processes: int, ops: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "ledger.db")
        pid, _ = Ledger(db).create_partner("bench", {"purchases": Amount(epsilon=10**5)},
                                           actor="bench")
        ctx = mp.get_context("spawn")
        start_at = time.time() + 1.5
        procs = [ctx.Process(target=worker, args=(db, pid, ops, f"p{n}", start_at))
                 for n in range(processes)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.time() - start_at
        assert all(p.exitcode == 0 for p in procs)
        charged = sum(1 for r in Ledger(db).reservations(pid) if r.status == "COMMITTED")
        assert charged == processes * ops
        return charged, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=400, help="reserve+commit pairs per process")
    args = parser.parse_args()
    print(f"{'processes':>9}  {'pairs':>6}  {'seconds':>8}  {'pairs/s':>8}  {'ms/pair':>8}")
    for processes in (1, 8):
        pairs, seconds = run(processes, args.ops)
        print(f"{processes:>9}  {pairs:>6}  {seconds:>8.2f}  {pairs / seconds:>8.0f}  "
              f"{1000 * seconds / pairs:>8.2f}")


if __name__ == "__main__":
    main()
