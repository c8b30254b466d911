"""10M rows in CI: the DuckDB engine matches the reference and stays small in memory.

Sized to fit CI (about two minutes on 2 cores): the five benchmark queries
(BENCHMARKS.md) on 10M demo rows. The exact bounded aggregates of the DuckDB
engine equal the reference's (polars, streaming); a full DP answer on the
DuckDB engine runs in a child process whose peak RSS is reported and held
under a generous ceiling (a regression guard; the targets are measured by
bench/bench_engines.py).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dpquery.demo import customers_for_rows, write_demo
from dpquery.engine import catalog, engines, plan as planner
from dpquery.engine.request import parse_body
from settings_helpers import make_settings

pytestmark = pytest.mark.slow
QUERIES = [
    "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region",
    "SELECT region, SUM(amount) AS s FROM purchases WHERE category = 'snacks' GROUP BY region",
    "SELECT region, AVG(amount) AS m FROM purchases GROUP BY region",
    "SELECT region, age_band, COUNT(DISTINCT customer_id) AS c FROM purchases GROUP BY region, age_band",
    "SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS r FROM purchases "
    "GROUP BY region, age_band",
]
PEAK_CEILING_MIB = 1024
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    write_demo(tmp / "data", customers_for_rows(10_000_000), seed=5)
    settings = make_settings(tmp, tmp / "data", engine="duckdb", max_rows=20_000_000)
    engine = {**settings.engine, "memory_limit": "1GB"}
    table = catalog.open_table(settings.datasets["purchases"], tmp / "prep", engine)
    return tmp, table


def test_duckdb_matches_the_reference_at_10m_rows(big):
    _tmp, table = big
    assert table.frame.select(__import__("polars").len()).collect().item() > 7_000_000
    for sql in QUERIES:
        request = parse_body({"sql": sql, "epsilon": 1.0})
        plan = planner.build(request, catalog.check_query(request.query, {"purchases": table}))
        for part in plan.bounded:
            by = list(part.by)
            reference = engines.aggregate("polars", table, part).sort(by)
            assert reference.equals(engines.aggregate("duckdb", table, part).sort(by)), sql


def test_a_duckdb_answer_at_10m_rows_stays_small(big):
    tmp, _table = big
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(TESTS)!r})
        from dpquery.engine import catalog, execute, plan as planner
        from dpquery.engine.request import parse_body
        from settings_helpers import make_settings
        tmp = Path({str(tmp)!r})
        settings = make_settings(tmp, tmp / "data", engine="duckdb", max_rows=20_000_000)
        table = catalog.open_table(settings.datasets["purchases"], tmp / "prep",
                                   {{**settings.engine, "memory_limit": "1GB"}})
        for sql in {QUERIES!r}:
            request = parse_body({{"sql": sql, "epsilon": 1.0}})
            plan = planner.build(request, catalog.check_query(request.query, {{"purchases": table}}))
            execute.answer_rows(plan, execute.release(plan))
        # VmHWM, not ru_maxrss: getrusage keeps the parent's peak across exec
        status = Path("/proc/self/status").read_text()
        print(json.dumps(int(status.split("VmHWM:")[1].split()[0]) // 1024))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"peak RSS of five DuckDB-engine answers at 10M rows: {peak} MiB")
    assert peak < PEAK_CEILING_MIB
