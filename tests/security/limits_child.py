"""Run by test_query_limits.py in a child process: conditions that once killed a worker.

    python limits_child.py DATA_DIR TMP_DIR

Each case goes the real way (parse_body -> check_query -> plan -> release, which
collects from the data) and prints "ok <case>". A native stack overflow ends
this process with SIGSEGV, not with an exception: the parent reads the exit
code and which cases printed. The query-size limits are raised here, so the
cases above them test predicate_expr's balanced trees, not the parser's refusal.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # settings_helpers

from dpquery.engine import catalog, execute, plan as planner, query  # noqa: E402
from dpquery.engine.request import parse_body  # noqa: E402
from settings_helpers import make_settings  # noqa: E402

COUNT = {"dataset": "purchases", "aggregates": [{"kind": "count"}]}


def cmp(i: int) -> dict:
    return {"column": "amount", "op": "<>", "value": float(i)}


def nested(depth: int) -> dict:
    """AND and OR alternating, `depth` levels (a comparison is level 1)."""
    doc = cmp(0)
    for i in range(depth - 1):
        doc = {"and" if i % 2 else "or": [doc, {"column": "year", "op": "=", "value": 2020}]}
    return doc


CASES = {
    # above the limits and past where left-deep chains crashed (1,500 IN values killed a
    # gunicorn worker; in a plain process ~1,600 crash planning): safe only when balanced
    "in_3000": {"column": "amount", "in": [float(i) for i in range(3000)]},
    "or_3000": {"or": [cmp(i) for i in range(3000)]},
    # the largest conditions the limits allow
    "and_at_term_limit": {"and": [cmp(i) for i in range(query.MAX_CONDITION_TERMS)]},
    "nested_at_depth_limit": nested(query.MAX_CONDITION_DEPTH),
}


def main(data: str, tmp: str) -> None:
    query.MAX_IN_VALUES = query.MAX_CONDITION_TERMS = 10 ** 6  # let the oversized cases through
    settings = make_settings(Path(tmp), Path(data))
    tables = {n: catalog.open_table(ds) for n, ds in settings.datasets.items()}
    for name, where in CASES.items():
        request = parse_body({"query": {**COUNT, "where": where}, "epsilon": 0.5})
        plan = planner.build(request, catalog.check_query(request.query, tables))
        execute.release(plan)
        print("ok", name, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
