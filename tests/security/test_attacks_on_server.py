"""Attacks on the real `dpquery serve` (gunicorn, several workers, loopback only).

Each attack asserts that the service stays up, answers in the documented JSON
error shape (or the console's page), and that the ledger totals stay right.
Loops are bounded; every server started here is stopped by its fixture.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest
import requests

from budget import Ledger
from dpquery.http.headers import SECURITY_HEADERS
from server_helpers import Server, running, write_config

pytestmark = pytest.mark.slow

RATE = 30  # rate_limit_per_minute of the main server
HEAVY = ("SELECT region, category, age_band, AVG(amount) AS a FROM purchases "
         "GROUP BY region, category, age_band")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from running(tmp_path_factory.mktemp("attacked"), workers=3,
                       rate_limit_per_minute=RATE)


def _partner(server, name: str, epsilon: str = "2") -> tuple[str, str]:
    r = requests.post(server.url + "/v1/admin/partners", timeout=30,
                      headers={"Authorization": f"Bearer {server.admin_key}"},
                      json={"name": name, "budgets": {"purchases": {"epsilon": epsilon}}})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def _alive(server) -> None:
    assert requests.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}


def _ledger_consistent(ledger_path: Path, partner_id: str) -> Fraction:
    """Spent equals the sum of the partner's reservations; returns it."""
    with Ledger(ledger_path) as ledger:
        assert ledger.integrity_check() == "ok"
        rows = ledger.reservations(partner_id)
        spent = ledger.spent(partner_id, "purchases").epsilon
        assert spent == sum((r.amount.epsilon for r in rows), Fraction(0))
        return spent


# -- requests gunicorn refuses itself ----------------------------------------------

def test_oversized_and_malformed_requests_get_the_json_shape(server):
    auth = {"Authorization": f"Bearer {server.partner_key}"}
    big = requests.get(server.url + "/v1/budget", headers={**auth, "X-Pad": "a" * 10_000},
                       timeout=30)
    err = _error(big, 431, "header_too_large")
    assert "a" * 50 not in err["message"]
    many = {**auth, **{f"X-H{i}": "1" for i in range(120)}}
    _error(requests.get(server.url + "/v1/budget", headers=many, timeout=30),
           431, "header_too_large")
    _error(requests.get(server.url + "/v1/budget?" + "q" * 10_000, headers=auth, timeout=30),
           414, "uri_too_long")
    raw = _raw(server.port, b"GARBAGE / NOT-HTTP\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ") and b'"invalid_request"' in raw
    assert b"<html" not in raw.lower()
    _alive(server)


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- rate limit: per key, whichever worker answers ------------------------------------

def test_rate_limit_holds_per_key_across_workers(server):
    _, key = _partner(server, "Flooder")
    auth = {"Authorization": f"Bearer {key}"}

    def get(_):
        return requests.get(server.url + "/v1/budget", headers=auth, timeout=30)
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:  # concurrent: every worker serves some
        responses = list(pool.map(get, range(3 * RATE)))
    elapsed = time.monotonic() - started
    allowed = sum(r.status_code == 200 for r in responses)
    refill = elapsed * RATE / 60
    assert RATE <= allowed <= RATE + refill + 1, (allowed, elapsed)
    for r in responses:
        if r.status_code != 200:
            err = _error(r, 429, "rate_limited")
            assert err["limit_per_minute"] == RATE and int(r.headers["Retry-After"]) >= 1
    other = requests.get(server.url + "/v1/budget", timeout=30,
                         headers={"Authorization": f"Bearer {server.partner_key}"})
    assert other.status_code == 200  # another key is not affected


# -- web console: headers, sessions, sign-in throttling ------------------------------

@pytest.mark.parametrize("path", ["/healthz", "/login", "/transparency", "/no-such-page",
                                  "/v1/budget"])
def test_every_response_has_the_security_headers(server, path):
    r = requests.get(server.url + path, timeout=30)
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, (path, name)


def _csrf(session, url: str) -> str:
    page = session.get(url + "/login", timeout=30).text
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _sign_in(session, url: str, key: str):
    return session.post(url + "/login", data={"api_key": key, "csrf_token": _csrf(session, url)},
                        allow_redirects=False, timeout=30)


def test_a_copied_session_cookie_dies_at_logout(server):
    victim, thief = requests.Session(), requests.Session()
    assert _sign_in(victim, server.url, server.partner_key).status_code == 302
    thief.cookies.update(victim.cookies)
    assert thief.get(server.url + "/console", allow_redirects=False, timeout=30).status_code == 200
    page = victim.get(server.url + "/console", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    victim.post(server.url + "/logout", data={"csrf_token": token}, timeout=30)
    stolen = thief.get(server.url + "/console", allow_redirects=False, timeout=30)
    assert stolen.status_code == 302 and stolen.headers["Location"].endswith("/login")


def test_guessing_a_key_locks_it_out_then_the_address(server):
    _, key = _partner(server, "Guessed")
    key_id = key.split("_")[1]
    guesser = requests.Session()
    for _ in range(5):  # login_failures_per_key
        assert _sign_in(guesser, server.url, f"dpq_{key_id}_{'x' * 43}").status_code == 401
    locked = _sign_in(requests.Session(), server.url, key)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert key not in locked.text
    for i in range(15):  # up to login_failures_per_ip (20) from this address
        assert _sign_in(guesser, server.url, f"dpq_{i:012x}_{'y' * 43}").status_code == 401
    assert _sign_in(requests.Session(), server.url, server.partner_key).status_code == 429
    # the partner API does not depend on the console's sign-in throttle
    assert requests.get(server.url + "/v1/budget", timeout=30,
                        headers={"Authorization": f"Bearer {key}"}).status_code == 200
    _alive(server)


def test_ledger_totals_after_the_attacks(server):
    ledger_path = server.var / "ledger.db"
    with Ledger(ledger_path) as ledger:
        partners = [p.id for p in ledger.list_partners()]
    for pid in partners:
        _ledger_consistent(ledger_path, pid)
    r = requests.get(server.url + "/v1/budget", timeout=30,
                     headers={"Authorization": f"Bearer {server.partner_key}"})
    assert r.status_code == 200


# -- a runaway query, then kill -9 of the master ------------------------------------

def test_timeout_then_master_killed_then_restart(server, tmp_path):
    data = server.var / "demo" / "purchases"
    config = write_config(tmp_path, data=data, query_timeout_seconds=0.001)
    slow = Server(tmp_path, workers=2, config=config)
    restarted = None
    try:
        slow.wait_ready()
        key, _ = slow.keys()
        workers = sorted(slow.wait_workers(2))  # both booted before the attack
        auth = {"Authorization": f"Bearer {key}"}
        body = {"sql": HEAVY, "epsilon": 0.5}
        err = _error(requests.post(slow.url + "/v1/queries", json=body, headers=auth,
                                   timeout=60), 504, "query_timeout")
        assert err["limit_seconds"] == 0.001
        _alive(slow)
        assert sorted(slow.workers()) == workers  # no worker died or was replaced
        with Ledger(slow.var / "ledger.db") as ledger:
            pid = ledger.list_partners()[0].id
        assert _ledger_consistent(slow.var / "ledger.db", pid) == Fraction(1, 2)
        again = requests.post(slow.url + "/v1/queries", json=body, headers=auth, timeout=60)
        _error(again, 409, "query_interrupted")
        assert _ledger_consistent(slow.var / "ledger.db", pid) == Fraction(1, 2)

        os.kill(slow.proc.pid, signal.SIGKILL)
        slow.proc.wait(timeout=10)
        killed_at = time.monotonic()
        _wait_gone(workers, 15)
        gone_after = time.monotonic() - killed_at
        restarted = Server(tmp_path, workers=1, config=config, port=slow.port)
        restarted.wait_ready(30)
        print(f"orphaned workers gone {gone_after:.2f} s after the master's SIGKILL")
        assert _ledger_consistent(slow.var / "ledger.db", pid) == Fraction(1, 2)
    finally:
        slow.stop()
        if restarted is not None:
            restarted.stop()


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and _state(p) != "Z" for p in pids):
            return
        time.sleep(0.1)
    raise AssertionError(f"workers {pids} outlived their master by {timeout} s")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "gone"
