"""Real OS processes on one ledger (SQLite file or PostgreSQL database): contention, SIGKILL."""

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

from budget import Amount, Ledger

WORKER = Path(__file__).with_name("ledger_worker.py")
PROCESSES, TRIES_EACH = 8, 30


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_many_processes_get_exactly_the_budget(location):
    db = location
    ledger = Ledger(db)
    pid, _ = ledger.create_partner("ifa", {"purchases": Amount(epsilon=1)}, actor="t")
    start_at = str(time.time() + 2.0)  # every worker starts hammering at once
    workers = [start_worker("grab", db, pid, str(TRIES_EACH), f"w{n}", start_at)
               for n in range(PROCESSES)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0] * PROCESSES, [o[1] for o in outputs]
    lines = [line for out, _ in outputs for line in out.splitlines()]
    verdicts = Counter(line.split()[0] for line in lines)
    assert verdicts == {"granted": 10, "refused": PROCESSES * TRIES_EACH - 10}
    charged = [r for r in ledger.reservations(pid) if r.charged]
    assert len(charged) == 10
    assert sum((r.amount for r in charged), Amount()) == Amount(epsilon=1)
    assert ledger.spent(pid, "purchases") == Amount(epsilon=1)
    assert ledger.global_spent("purchases") == Amount(epsilon=1)
    assert ledger.integrity_check() == "ok"
    ledger.close()


def run_until_killed(db: str, pid: str, prefix: str, rng: random.Random,
                     right_after_reserve: bool) -> list[str]:
    """Start a crash worker, SIGKILL it, return what it printed.

    Killed either as soon as it reports a reservation (between reserve and
    commit, or during commit) or at a random moment of its loop.
    """
    worker = start_worker("crash", db, pid, prefix)
    deadline, seen = time.monotonic() + 15, []
    while len(seen) < 4 or (right_after_reserve and not seen[-1].startswith("reserved")):
        seen.append(worker.stdout.readline())
        assert time.monotonic() < deadline and worker.poll() is None, worker.stderr.read()
    if not right_after_reserve:
        time.sleep(rng.uniform(0.0, 0.1))
    worker.send_signal(signal.SIGKILL)
    out, _ = worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    return [line.strip() for line in seen] + out.splitlines()


def test_sigkill_between_reserve_and_commit_keeps_every_charge(location):
    db = location
    ledger = Ledger(db)
    pid, _ = ledger.create_partner("ifa", {"purchases": Amount(epsilon=10**5)}, actor="t")
    rng = random.Random()
    reported: dict[int, str] = {}
    for round_ in range(10):
        for line in run_until_killed(db, pid, f"k{round_}", rng, round_ % 2 == 0):
            if line.startswith("reserved "):
                _, rid, request_id = line.split()
                reported[int(rid)] = request_id
    ledger.close()
    after = Ledger(db, create=False)
    rows = {r.id: r for r in after.reservations(pid)}
    assert all(rows[rid].charged and rows[rid].request_id == req for rid, req in reported.items())
    assert len({r.request_id for r in rows.values()}) == len(rows)
    assert all(r.status in ("HELD", "COMMITTED") for r in rows.values())
    assert any(r.status == "HELD" for r in rows.values())  # some died before commit
    total = sum((r.amount for r in rows.values()), Amount())
    assert after.spent(pid, "purchases") == total == after.global_spent("purchases")
    assert total.epsilon == Fraction(len(rows), 10)
    assert after.integrity_check() == "ok"
    reserved = sum(1 for e in after.ledger_entries(pid) if e.outcome == "reserved")
    assert reserved == len(rows)
    after.close()
