"""Two real `dpquery serve` hosts on one PostgreSQL ledger: exact budgets, kill -9, restarts.

Each host has its own port and var directory; both use `[ledger] url`. The
PostgreSQL cluster is this module's own (it is restarted here). Clients are
separate processes. Every server is stopped and the cluster removed.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from fractions import Fraction

import pytest
import requests

from budget import Amount, Ledger
from budget.identity import init_ledger
from pg_helpers import Cluster
from server_helpers import Server, write_config

pytestmark = pytest.mark.slow
EPS = Fraction(1, 4)

CLIENT = r"""
import json, sys, requests
urls, key, tag, n = sys.argv[1].split(","), sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(n):
    body = {"sql": f"SELECT COUNT(*) AS n_{tag}_{i} FROM purchases", "epsilon": 0.25}
    try:
        r = requests.post(urls[i % len(urls)] + "/v1/queries", json=body, timeout=60,
                          headers={"Authorization": "Bearer " + key})
    except requests.RequestException:
        print(json.dumps([0, "connection", None, f"n_{tag}_{i}"]), flush=True)
        continue
    b = r.json()
    print(json.dumps([r.status_code, b.get("error", {}).get("code"), b.get("query_id"),
                      f"n_{tag}_{i}"]), flush=True)
"""


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="module")
def hosts(cluster, tmp_path_factory, demo_data):
    """Hosts A and B (2 workers each) on one PostgreSQL ledger made with `admin init`."""
    url = cluster.create_database()
    servers = []
    try:
        for name in ("a", "b"):
            tmp = tmp_path_factory.mktemp(f"host-{name}")
            config = write_config(tmp, data=demo_data)
            text = config.read_text().replace("[ledger]\n", f'[ledger]\nurl = "{url}"\n', 1)
            config.write_text(text)
            if name == "a":
                init = subprocess.run([sys.executable, "-m", "dpquery.cli", "--config",
                                       str(config), "admin", "init"], capture_output=True,
                                      text=True, cwd=tmp)
                assert init.returncode == 0 and "created ledger" in init.stdout, init.stderr
            servers.append(Server(tmp, workers=2, demo=False, config=config))
        for server in servers:
            server.wait_ready(timeout=120)
        yield url, servers
    finally:
        for server in servers:
            server.stop()


def _partner(url: str, epsilon: Fraction) -> tuple[str, str]:
    with Ledger(url, create=False) as ledger:
        return ledger.create_partner(f"p{random.getrandbits(32)}",
                                     {"purchases": Amount(epsilon=epsilon)}, actor="test")


def _clients(urls: list[str], key: str, tags: list[str], n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", CLIENT, ",".join(urls), key, tag, str(n)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for tag in tags]


def _results(clients: list[subprocess.Popen], seen: list[list] = ()) -> list[list]:
    out = list(seen)
    for c in clients:
        stdout, stderr = c.communicate(timeout=300)
        assert c.returncode == 0, stderr
        out += [json.loads(line) for line in stdout.splitlines()]
    return out


def _read(clients: list[subprocess.Popen], lines_each: int) -> list[list]:
    """Wait until every client has finished ``lines_each`` more requests; their results."""
    return [json.loads(c.stdout.readline()) for c in clients for _ in range(lines_each)]


def _check_books(url: str, pid: str, results: list[list], budget: Fraction) -> list:
    """Every answer received is charged; the counters equal the charged rows; never negative."""
    with Ledger(url, create=False) as ledger:
        rows = ledger.reservations(pid)
        spent = ledger.spent(pid, "purchases")
        assert ledger.integrity_check() == "ok"
        assert ledger.remaining(pid, "purchases").epsilon >= 0
    by_id = {r.id: r for r in rows}
    answered = [r for r in results if r[0] == 200]
    assert all(by_id[q].status == "COMMITTED" and by_id[q].charged for _, _, q, _ in answered)
    charged = [r for r in rows if r.charged]
    assert spent == sum((r.amount for r in charged), Amount())
    assert spent.epsilon <= budget
    texts = [r.query_text for r in rows]
    assert len(texts) == len(set(texts))  # no query charged twice
    return charged


def test_two_hosts_grant_exactly_the_budget(hosts):
    url, servers = hosts
    n = 7
    pid, key = _partner(url, n * EPS)
    results = _results(_clients([s.url for s in servers], key, [f"x{i}" for i in range(4)], 5))
    statuses = [(r[0], r[1]) for r in results]
    assert statuses.count((200, None)) == n, statuses
    assert statuses.count((403, "budget_exhausted")) == len(results) - n, statuses
    charged = _check_books(url, pid, results, n * EPS)
    assert len(charged) == n and all(r.status == "COMMITTED" for r in charged)


def test_kill_9_of_workers_on_both_hosts_mid_query(hosts):
    url, servers = hosts
    budget = 12 * EPS
    pid, key = _partner(url, budget)
    clients = _clients([s.url for s in servers], key, [f"k{i}" for i in range(4)], 8)
    killed = 0
    for _ in range(3):
        time.sleep(random.uniform(0.2, 0.6))
        for server in servers:
            workers = server.workers()
            if workers:
                signal_target = random.choice(workers)
                try:
                    os.kill(signal_target, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
    results = _results(clients)
    assert killed >= 2
    _check_books(url, pid, results, budget)
    for server in servers:  # gunicorn replaced the killed workers; both hosts still answer
        assert requests.get(server.url + "/healthz", timeout=30).ok


def test_postgresql_restart_fails_cleanly_and_recovers(hosts, cluster):
    url, servers = hosts
    budget = 1000 * EPS
    pid, key = _partner(url, budget)
    auth = {"Authorization": "Bearer " + key}
    clients = _clients([s.url for s in servers], key, [f"r{i}" for i in range(3)], 12)
    seen = _read(clients, 2)  # under load...
    cluster.stop("fast")
    seen += _read(clients, 2)  # ...each client's second request here ran with the ledger down
    down = [requests.post(s.url + "/v1/queries", headers=auth, timeout=60,
                          json={"sql": f"SELECT COUNT(*) AS down_{i} FROM purchases",
                                "epsilon": 0.25}) for i, s in enumerate(servers)]
    cluster.start()
    results = _results(clients, seen)
    for r in down:
        assert r.status_code == 503 and r.json()["error"]["code"] == "ledger_unavailable"
        assert r.headers["Retry-After"] == "5"
    failed = [r for r in results if r[0] != 200]
    assert len(failed) >= len(clients), failed
    assert all((r[0], r[1]) == (503, "ledger_unavailable") for r in failed), failed
    recovered = []
    for server in servers:  # no process was restarted: each host answers again
        for attempt in range(20):
            r = requests.post(server.url + "/v1/queries", headers=auth, timeout=60,
                              json={"sql": f"SELECT COUNT(*) AS up_{server.port}_{attempt} "
                                           "FROM purchases", "epsilon": 0.25})
            if r.status_code == 200:
                recovered.append(r.json()["query_id"])
                break
            assert r.json()["error"]["code"] == "ledger_unavailable"
            time.sleep(0.5)
    assert len(recovered) == 2
    results += [[200, None, q, "up"] for q in recovered]
    charged = _check_books(url, pid, results, budget)
    assert not any("down_" in r.query_text for r in charged)  # refused while down: no charge
