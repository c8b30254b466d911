"""The time to answer must not depend on the noise drawn.

A fresh answer leaves on a multiple of the time quantum measured from the
start of the request (dpquery.http.api.pad_to_quantum). The statistical test plants
a timing leak -- 20 ms extra work whenever the noisy count is odd -- and checks
that it is visible without padding and invisible with it.
"""
from __future__ import annotations

import time
from collections import Counter

import pytest

from budget import Amount
from dpquery.http import api
from dpquery import service
from dpquery.http.app import create_app

from .conftest import bearer


def test_pad_to_quantum_ends_on_a_multiple(monkeypatch):
    now = [10.0]
    monkeypatch.setattr(api.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(api.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    for elapsed in (0.001, 0.049, 0.051, 0.3):
        now[0] = 10.0 + elapsed
        api.pad_to_quantum(10.0, 0.05)
        assert (now[0] - 10.0) / 0.05 == pytest.approx(round((now[0] - 10.0) / 0.05))
        assert now[0] - 10.0 >= elapsed


def _timings(settings, ledger, key, quantum: float, tag: str, n: int):
    app = create_app({"SETTINGS": settings, "LEDGER": ledger, "TIME_QUANTUM_SECONDS": quantum})
    client = app.test_client()
    odd, even = [], []
    for i in range(n):
        sql = f"SELECT COUNT(*) AS n_{tag}_{i} FROM purchases"  # a fresh query each time
        start = time.perf_counter()
        r = client.post("/v1/queries", json={"sql": sql, "epsilon": 0.01, "derive": False},
                        headers=bearer(key))  # fresh noise each time, not a derived answer
        elapsed = time.perf_counter() - start
        assert r.status_code == 200 and r.json["repeat"] is False, r.json
        value = r.json["rows"][0][f"n_{tag}_{i}"]
        (odd if round(value) % 2 else even).append(elapsed)
    return odd, even


@pytest.mark.slow
def test_padding_hides_a_noise_dependent_delay(settings, ledger, monkeypatch):
    stats = pytest.importorskip("scipy.stats")
    _, key = ledger.create_partner("Timing", {"purchases": Amount(epsilon=10)},
                                   actor="test", reason="timing")
    original = service.execute.answer_rows

    def leaky(plan, noisy):
        rows = original(plan, noisy)
        if round(next(v for v in rows[0].values())) % 2:
            time.sleep(0.02)  # a planted leak: slower when the noisy value is odd
        return rows
    monkeypatch.setattr(service.execute, "answer_rows", leaky)

    odd, even = _timings(settings, ledger, key, 0.0, "bare", 80)  # power on a loaded machine too
    assert len(odd) >= 5 and len(even) >= 5
    assert stats.mannwhitneyu(odd, even).pvalue < 0.01  # the leak is visible unpadded

    quantum = 0.4
    odd, even = _timings(settings, ledger, key, quantum, "padded", 24)
    steps = Counter(round(t / quantum) for t in odd + even)
    # nearly all answers leave on the same quantum (a loaded machine may push one over)
    assert steps.most_common(1)[0][1] >= 0.9 * len(odd + even), (odd, even)
    assert stats.mannwhitneyu(odd, even).pvalue > 0.001
