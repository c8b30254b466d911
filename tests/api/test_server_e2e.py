"""End to end: the real `dpquery serve` (gunicorn, 3 workers) in a subprocess.

Concurrency and crash tests use real processes: clients in separate Python
processes, workers killed with SIGKILL. The server is always shut down.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from fractions import Fraction

import pytest
import requests

from budget import Ledger
from server_helpers import running

pytestmark = pytest.mark.slow

CLIENT_SCRIPT = """
import json, sys, requests
url, key, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = []
for i in range(n):
    r = requests.post(url + "/v1/queries", headers={"Authorization": "Bearer " + key},
                      json={"sql": "SELECT COUNT(*) AS n FROM purchases WHERE amount >= "
                                   f"{0.5 + 3 * int(tag[1:]) + i}",  # 15 distinct questions
                            "epsilon": 0.25}, timeout=60)
    body = r.json()
    out.append([r.status_code, body.get("error", {}).get("code"), body.get("repeat")])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from running(tmp_path_factory.mktemp("server"))


def _new_partner(server, name: str, epsilon: str) -> tuple[str, str]:
    r = requests.post(server.url + "/v1/admin/partners",
                      headers={"Authorization": f"Bearer {server.admin_key}"},
                      json={"name": name, "budgets": {"purchases": {"epsilon": epsilon}}})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def _charged(server, partner_id: str) -> Fraction:
    with Ledger(server.tmp / "var" / "ledger.db") as ledger:
        assert ledger.integrity_check() == "ok"
        return ledger.spent(partner_id, "purchases").epsilon


def test_first_start_made_demo_data_and_keys(server):
    keys = server.tmp / "var" / "demo-keys.txt"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert any((server.tmp / "var" / "demo" / "purchases").glob("*.parquet"))
    log = server.output()
    assert "curl -s " in log and log.count(server.partner_key) == 2  # banner + curl, once
    r = requests.get(server.url + "/v1/budget",
                     headers={"Authorization": f"Bearer {server.partner_key}"})
    assert r.json()["datasets"][0]["budget"]["epsilon"] == "10"
    assert len(server.wait_workers(3)) == 3


def test_concurrent_clients_never_overspend(server):
    pid, key = _new_partner(server, "Concurrent", "1")  # admits 4 queries of epsilon 0.25
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, server.url, key, f"p{p}", "3"],
                              stdout=subprocess.PIPE, text=True) for p in range(5)]
    results = [r for p in procs for r in json.loads(p.communicate(timeout=120)[0])]
    answered = [r for r in results if r[0] == 200]
    assert len(answered) == 4 and all(r[2] is False for r in answered)
    assert all(r[:2] == [403, "budget_exhausted"] for r in results if r[0] != 200)
    assert _charged(server, pid) == 1


def test_worker_killed_mid_query_leaves_the_ledger_right(server):
    pid, key = _new_partner(server, "Crash", "5")
    outcomes = []

    def ask(i: int) -> None:
        try:
            r = requests.post(server.url + "/v1/queries", timeout=60,
                              headers={"Authorization": f"Bearer {key}"},
                              json={"sql": "SELECT region, category, age_band, AVG(amount) AS "
                                           f"a{i} FROM purchases GROUP BY region, category, "
                                           "age_band", "epsilon": 0.25})
            outcomes.append(r.status_code)
        except requests.ConnectionError:
            outcomes.append("killed")
        except requests.RequestException as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    for worker in server.workers():
        os.kill(worker, signal.SIGKILL)
    for t in threads:
        t.join(timeout=90)
    assert "killed" in outcomes and set(outcomes) <= {200, "killed"}, outcomes
    with Ledger(server.tmp / "var" / "ledger.db") as ledger:
        rows = ledger.reservations(pid)
        # every reservation still counts: a dead worker's HELD charge is never given back
        assert {r.status for r in rows} <= {"HELD", "COMMITTED"}
        assert ledger.spent(pid, "purchases").epsilon == sum(r.amount.epsilon for r in rows)
        assert sum(r.status == "COMMITTED" for r in rows) >= outcomes.count(200)
    assert _charged(server, pid) <= 5
    server.wait_ready(30)  # gunicorn replaced the workers
    r = requests.get(server.url + "/v1/budget", headers={"Authorization": f"Bearer {key}"})
    assert Fraction(r.json()["datasets"][0]["spent"]["epsilon"]) == _charged(server, pid)


def test_cli_batch_dry_run_and_run(server, tmp_path):
    _, key = _new_partner(server, "Batch", "2")
    batch = tmp_path / "batch.sql"
    batch.write_text("SELECT region, COUNT(*) AS n FROM purchases GROUP BY region;\n"
                     "-- the second one\n"
                     "SELECT year, AVG(amount) AS avg_amount FROM purchases GROUP BY year;\n")
    env = {**os.environ, "DPQUERY_KEY": key, "DPQUERY_URL": server.url}
    cmd = [sys.executable, "-m", "dpquery.cli", "query", "--file", str(batch), "--epsilon", "0.3"]
    dry = subprocess.run(cmd + ["--dry-run"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "total: ε=0.6 for 2 statement(s)" in dry.stdout
    budget = requests.get(server.url + "/v1/budget", headers={"Authorization": f"Bearer {key}"})
    assert budget.json()["datasets"][0]["spent"]["epsilon"] == "0"
    out = tmp_path / "answers.csv"
    run = subprocess.run(cmd + ["--format", "csv", "--out", str(out)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    header = out.read_text().splitlines()[0].split(",")  # one table, a query column first
    assert header[0] == "query" and {"region", "n", "year", "avg_amount"} <= set(header)
    missing = subprocess.run([sys.executable, "-m", "dpquery.cli", "query", "SELECT 1", "--epsilon", "1"], capture_output=True,
                             text=True, env={k: v for k, v in os.environ.items()
                                             if k not in ("DPQUERY_URL", "DPQUERY_KEY")})
    assert missing.returncode == 2 and "--url" in missing.stderr
