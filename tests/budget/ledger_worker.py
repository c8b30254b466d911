"""A separate OS process that hammers a ledger (used by the concurrency tests).

DB is a SQLite file path or a postgresql:// URL.

Usage:
  python ledger_worker.py grab DB PARTNER COUNT PREFIX START_AT
      wait until time START_AT, try COUNT reservations of epsilon 0.1, commit
      each one granted; print "granted <id>" or "refused <limit>" per try.
  python ledger_worker.py crash DB PARTNER PREFIX
      forever: reserve, print "reserved <id> <request id>", sleep 0-4 ms, commit, print
      "committed <id>" (the parent kills it with SIGKILL at random moments).
"""

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from budget import Amount, BudgetExhausted, Ledger  # noqa: E402

TENTH = Amount(epsilon=0.1)


def grab(db: str, partner: str, count: int, prefix: str, start_at: float) -> None:
    ledger = Ledger(db, create=False)
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(count):
        try:
            r = ledger.reserve(partner, "purchases", TENTH, f"{prefix}-{i}", "SELECT COUNT(*)")
        except BudgetExhausted as exc:
            print(f"refused {exc.limit}", flush=True)
            continue
        ledger.commit(r.id)
        print(f"granted {r.id}", flush=True)


def crash(db: str, partner: str, prefix: str) -> None:
    ledger = Ledger(db, create=False)
    i = 0
    while True:
        r = ledger.reserve(partner, "purchases", TENTH, f"{prefix}-{i}", f"SELECT {i}")
        print(f"reserved {r.id} {r.request_id}", flush=True)
        time.sleep(random.uniform(0, 0.004))  # stands in for drawing the noise
        ledger.commit(r.id, answer_json='{"rows": []}')
        print(f"committed {r.id}", flush=True)
        i += 1


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "grab":
        grab(args[0], args[1], int(args[2]), args[3], float(args[4]))
    else:
        crash(args[0], args[1], args[2])
