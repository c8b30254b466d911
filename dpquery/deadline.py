"""Run a release under a deadline: the caller hears back on time, whatever the engine does.

OpenDP and polars do their work in Rust. Neither an exception nor a signal
handler can stop that work: a SIGALRM handler runs only between Python
bytecodes, so it fires late or never inside one long `collect()`. So the
release runs in a daemon thread and the request thread waits for it at most
`seconds`. A release that overruns finishes in the background (Rust releases
the GIL, so the worker keeps serving meanwhile) and its result is dropped.
"""
from __future__ import annotations

import threading

from dpquery.errors import QueryTimeout


def call_within(seconds: float, fn, *args):
    """`fn(*args)`, or `QueryTimeout` once `seconds` have passed without a result."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the waiting thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="dpquery-release", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise QueryTimeout(f"the query ran longer than the limit of {seconds:g} s and was "
                           "stopped; its charge stays (noise may have been drawn) and no answer "
                           "is kept. Ask a smaller query: fewer groups, aggregates or rows",
                           limit_seconds=seconds)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
