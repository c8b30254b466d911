"""SQL and JSON spellings become the same model; unsupported SQL is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpquery.engine import catalog
from dpquery.errors import DPQueryError, InvalidQuery
from dpquery.engine.query import canonical, Request, Spend
from dpquery.engine.request import parse_body, query_from_json
from dpquery.engine.sql import parse_sql

FIXTURES = Path(__file__).parent / "fixtures"
PAIRS = [json.loads(line) for line in (FIXTURES / "sql_pairs.jsonl").read_text().splitlines() if line]
REFUSED = [tuple(part.strip() for part in line.split("|||"))
           for line in (FIXTURES / "sql_refused.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("pair", PAIRS, ids=[p["sql"][:60] for p in PAIRS])
def test_sql_and_json_give_the_same_model(pair):
    assert parse_sql(pair["sql"]) == query_from_json(pair["query"])


@pytest.mark.parametrize("pair", PAIRS[:3], ids=lambda p: p["sql"][:40])
def test_canonical_text_is_the_same_for_both_spellings(pair):
    a = Request(parse_sql(pair["sql"]), Spend(epsilon=0.5))
    b = Request(query_from_json(pair["query"]), Spend(epsilon=0.5))
    assert canonical(a) == canonical(b)


def test_canonical_text_differs_for_a_rephrased_query():
    a = Request(parse_sql("SELECT COUNT(*) FROM purchases WHERE year = 2024"), Spend(epsilon=0.5))
    b = Request(parse_sql("SELECT COUNT(*) FROM purchases WHERE year >= 2024"), Spend(epsilon=0.5))
    assert canonical(a) != canonical(b)


@pytest.mark.parametrize("sql,fragment,status", REFUSED, ids=[r[0][:50] for r in REFUSED])
def test_refused_sql_names_the_problem(sql, fragment, status, settings):
    assert_refused_unread(sql, fragment, settings, int(status))


def assert_refused_unread(sql: str, fragment: str, settings, status: int = 400) -> None:
    """`sql` is refused with `fragment` in its message while checking the query, before
    anything reads the data (the table's frame fails if read)."""
    tables = {"purchases": _table_that_must_not_be_read(settings)}
    with pytest.raises(DPQueryError) as err:
        request = parse_body({"sql": sql, "epsilon": 0.5}, datasets=settings.datasets)
        catalog.check_query(request.query, tables)
    assert fragment in err.value.message
    assert err.value.status == status


def test_parse_error_points_at_the_text():
    with pytest.raises(InvalidQuery) as err:
        parse_sql("SELECT region, MEDIAN_PRICE(amount) FROM purchases GROUP BY region")
    lines = err.value.message.splitlines()
    assert lines[0].startswith("line 1, col 16: unknown function MEDIAN_PRICE")
    assert lines[2].index("^") - 2 == lines[1].index("MEDIAN_PRICE") - 2


def _table_that_must_not_be_read(settings):
    """A Table whose frame fails (with a non-dpquery error) if anything reads it."""
    import polars as pl

    table = catalog.open_table(settings.datasets["purchases"])
    missing = pl.scan_parquet("/nonexistent/dpquery-test/*.parquet")
    return catalog.Table(table.dataset, missing, table.schema, table.version)
