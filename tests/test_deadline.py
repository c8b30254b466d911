"""The release deadline: an overrun is reported on time and the engine is told to stop."""
from __future__ import annotations

import threading
import time

import duckdb
import pytest

from dpquery import deadline
from dpquery.errors import QueryTimeout

# A cross join of two 10^5-row ranges: 10^10 pairs, hours of work unless interrupted.
SLOW = "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range = -1"


def _slow_duckdb(finished: threading.Event, seen: dict):
    cursor = duckdb.connect().cursor()
    try:
        with deadline.cancellable(cursor.interrupt):
            cursor.sql(SLOW).fetchall()
    except Exception as exc:  # noqa: BLE001 - what the interrupt raises is recorded
        seen["error"] = type(exc).__name__
    finally:
        finished.set()


def test_an_overrun_duckdb_query_is_interrupted():
    finished, seen = threading.Event(), {}
    with pytest.raises(QueryTimeout):
        deadline.call_within(0.5, _slow_duckdb, finished, seen)
    assert finished.wait(120), "the interrupted query kept running"
    assert seen["error"] == "InterruptException"


def test_a_stop_hook_is_only_active_while_its_block_runs():
    calls = []

    def quick():
        with deadline.cancellable(lambda: calls.append("stop")):
            pass
        time.sleep(2)  # overruns after its engine call ended: nothing to stop
    with pytest.raises(QueryTimeout):
        deadline.call_within(0.2, quick)
    assert calls == []


def test_outside_a_deadline_cancellable_does_nothing():
    with deadline.cancellable(lambda: 1 / 0):
        pass
