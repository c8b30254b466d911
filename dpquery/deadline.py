"""Run a release under a deadline: the caller hears back on time, whatever the engine does.

OpenDP and polars do their work in Rust. Neither an exception nor a signal
handler can stop that work: a SIGALRM handler runs only between Python
bytecodes, so it fires late or never inside one long `collect()`. So the
release runs in a daemon thread and the request thread waits for it at most
`seconds`. A release that overruns is told to stop: engines that can be
interrupted register how while they run (`cancellable`: DuckDB's
`interrupt()`, Spark's job tags), and the deadline calls it. OpenDP's polars
work cannot be interrupted; it finishes in the background (Rust releases the
GIL, so the worker keeps serving meanwhile) and its result is dropped.
"""
from __future__ import annotations

import contextlib
import threading

from dpquery.errors import QueryTimeout

_local = threading.local()  # the running release's list of stop callbacks, per thread


@contextlib.contextmanager
def cancellable(stop):
    """While the block runs, an overrun deadline calls `stop()` (from the waiting thread)."""
    hooks = getattr(_local, "hooks", None)
    if hooks is None:  # not under call_within: nothing to stop
        yield
        return
    hooks.append(stop)
    try:
        yield
    finally:
        hooks.remove(stop)


def call_within(seconds: float, fn, *args):
    """`fn(*args)`, or `QueryTimeout` once `seconds` have passed without a result."""
    outcome: dict = {}
    hooks: list = []

    def run() -> None:
        _local.hooks = hooks
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the waiting thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="dpquery-release", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        _stop(list(hooks))
        raise QueryTimeout(f"the query ran longer than the limit of {seconds:g} s and was "
                           "stopped; its charge stays (noise may have been drawn) and no answer "
                           "is kept. Ask a smaller query: fewer groups, aggregates or rows",
                           limit_seconds=seconds)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _stop(hooks: list) -> None:
    """Ask each running engine call to stop; a failing stop must not hide the timeout."""
    for stop in hooks:
        try:
            stop()
        except Exception:  # noqa: BLE001 - the engine may have just finished
            pass
