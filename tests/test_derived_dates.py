"""Date columns: configuration, date parts and date comparisons in SQL, and every engine.

Golden pairs (SQL -> query model) and refusals first; then the public values
date parts take from the configured days; then polars (the reference) and
DuckDB computing identical bounded aggregates, on the demo data and on data
with days outside the configured range and outside years 0001..9999, and one
customer's influence bounded. The Spark case is marked slow.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from dpquery import config
from dpquery.config import Column
from dpquery.engine import catalog, derived_bounds, execute
from dpquery.engine.derived import Col, DatePart, Derived, Lit, Case
from dpquery.engine.query import Aggregate, Between, Compare, InList, Query
from dpquery.engine.sql import parse_sql
from dpquery.errors import ConfigError, InvalidQuery
from settings_helpers import make_settings, shipped_config
from test_derived_engines import exact, plan_of, table  # noqa: F401  (table: the demo fixture)

COUNT = Aggregate("count", "n")
D = dt.date

PAIRS = [
    ("SELECT MONTH(purchased_on) AS m, COUNT(*) AS n FROM purchases GROUP BY m",
     Query("purchases", (COUNT,), ("m",), derived=(Derived("m", DatePart("MONTH", Col("purchased_on"))),))),
    ("SELECT EXTRACT(QUARTER FROM purchased_on) AS q, COUNT(*) AS n FROM purchases GROUP BY q",
     Query("purchases", (COUNT,), ("q",), derived=(Derived("q", DatePart("QUARTER", Col("purchased_on"))),))),
    ("SELECT COUNT(*) AS n FROM purchases WHERE purchased_on >= DATE '2024-01-01'",
     Query("purchases", (COUNT,), where=Compare("purchased_on", ">=", "2024-01-01"))),
    ("SELECT COUNT(*) AS n FROM purchases WHERE CAST('2024-01-01' AS DATE) <= purchased_on",
     Query("purchases", (COUNT,), where=Compare("purchased_on", ">=", "2024-01-01"))),
    ("SELECT COUNT(*) AS n FROM purchases WHERE purchased_on BETWEEN '2024-01-01' AND '2024-03-31'",
     Query("purchases", (COUNT,), where=Between("purchased_on", "2024-01-01", "2024-03-31"))),
    ("SELECT COUNT(*) AS n FROM purchases WHERE purchased_on IN ('2024-12-24'::date, '2024-12-31')",
     Query("purchases", (COUNT,), where=InList("purchased_on", ("2024-12-24", "2024-12-31")))),
    ("SELECT SUM(CASE WHEN purchased_on < DATE '2020-03-01' THEN 1 ELSE 0 END) AS pre FROM purchases",
     Query("purchases", (Aggregate("sum", "pre", "expr1"),), derived=(Derived("expr1", Case(
         ((Compare("purchased_on", "<", "2020-03-01"), Lit(1)),), Lit(0))),))),
]
DOW = DatePart("DOW", Col("purchased_on"))
DOW_SPELLINGS = ["DAYOFWEEK(purchased_on)", "DAY_OF_WEEK(purchased_on)", "ISODOW(purchased_on)",
                 "EXTRACT(DOW FROM purchased_on)", "EXTRACT(ISODOW FROM purchased_on)"]


@pytest.mark.parametrize("sql,model", PAIRS, ids=[p[0][:60] for p in PAIRS])
def test_sql_gives_the_golden_model(sql, model):
    assert parse_sql(sql) == model


@pytest.mark.parametrize("spelling", DOW_SPELLINGS)
def test_every_day_of_week_spelling_is_the_iso_day(spelling):
    query = parse_sql(f"SELECT {spelling} AS d, COUNT(*) AS n FROM purchases GROUP BY d")
    assert query.derived == (Derived("d", DOW),)


def test_the_json_form_reads_date_parts_and_dates():
    from dpquery.engine.request import query_from_json
    doc = {"dataset": "purchases", "derived": {"m": "MONTH(purchased_on)"}, "group_by": ["m"],
           "where": {"column": "purchased_on", "op": ">=", "value": "2024-01-01"},
           "aggregates": [{"kind": "count", "alias": "n"}]}
    assert query_from_json(doc) == parse_sql(
        "SELECT MONTH(purchased_on) AS m, COUNT(*) AS n FROM purchases "
        "WHERE purchased_on >= '2024-01-01' GROUP BY m")


REFUSED = [
    ("SELECT purchased_on, COUNT(*) FROM purchases GROUP BY purchased_on",
     "group by a part of it, e.g. YEAR(purchased_on), MONTH(purchased_on)"),
    ("SELECT SUM(purchased_on) FROM purchases", "is a date, and SUM needs numbers"),
    ("SELECT AVG(purchased_on) FROM purchases", "is a date, and AVG needs numbers"),
    ("SELECT SUM(purchased_on + 1) FROM purchases", "cannot compute with a date column itself"),
    ("SELECT CASE WHEN amount > 5 THEN purchased_on ELSE purchased_on END AS d, COUNT(*) "
     "FROM purchases GROUP BY d", "cannot compute with a date column itself"),
    ("SELECT COUNT(*) FROM purchases WHERE purchased_on > '2024-13-01'",
     "compare it with a date written YYYY-MM-DD, e.g. purchased_on >= DATE '2024-01-01'"),
    ("SELECT COUNT(*) FROM purchases WHERE purchased_on > '1/2/2024'", "(got '1/2/2024')"),
    ("SELECT COUNT(*) FROM purchases WHERE purchased_on > 2020", "written YYYY-MM-DD"),
    ("SELECT COUNT(*) FROM purchases WHERE purchased_on > DATE '2024-02-30'",
     "'2024-02-30' is not a date written YYYY-MM-DD; write e.g. DATE '2024-01-01'"),
    ("SELECT YEAR(amount) AS y, COUNT(*) FROM purchases GROUP BY y", "needs a date column"),
    ("SELECT EXTRACT(HOUR FROM purchased_on) AS h, COUNT(*) FROM purchases GROUP BY h",
     "EXTRACT(HOUR FROM ...) is not supported; date parts: YEAR, QUARTER, MONTH, DAY, DOW"),
    ("SELECT WEEK(purchased_on) AS w, COUNT(*) FROM purchases GROUP BY w",
     "WEEK is not supported in a row-level expression"),
]


@pytest.mark.parametrize("sql,fragment", REFUSED, ids=[r[0][:60] for r in REFUSED])
def test_refused_before_any_data_is_read(sql, fragment, settings):
    from test_sql import assert_refused_unread
    assert_refused_unread(sql, fragment, settings)


# -- configuration ------------------------------------------------------------------

def _with_column(body: dict) -> dict:
    raw = shipped_config()
    raw["datasets"]["purchases"]["columns"]["purchased_on"] = body
    return raw


@pytest.mark.parametrize("lower", [D(2016, 1, 1), "2016-01-01"])
def test_a_date_column_takes_toml_dates_or_iso_strings(lower):
    ds = config.from_dict(_with_column({"type": "date", "lower": lower, "upper": "2025-12-31"}))
    col = ds.datasets["purchases"].columns["purchased_on"]
    assert col.dates == (D(2016, 1, 1), D(2025, 12, 31))
    assert col.lower is None and not col.is_numeric  # numeric code never reads a date


def test_the_shipped_config_exposes_the_demo_dates_and_keeps_year():
    from dpquery import demo
    ds = config.from_dict(shipped_config()).datasets["purchases"]
    assert ds.columns["purchased_on"].dates == (demo.FIRST_DAY, demo.LAST_DAY)
    assert ds.columns["year"].derived_from == "purchased_on"


@pytest.mark.parametrize("body,fragment", [
    ({"type": "date", "lower": "2016-01-01"}, "purchased_on.upper is required for a date column"),
    ({"type": "date", "lower": "2016/01/01", "upper": "2025-12-31"},
     "purchased_on.lower: expected a date written YYYY-MM-DD"),
    ({"type": "date", "lower": 2016, "upper": "2025-12-31"}, "got 2016"),
    ({"type": "date", "lower": dt.datetime(2016, 1, 1), "upper": "2025-12-31"}, "YYYY-MM-DD"),
    ({"type": "date", "lower": "2025-12-31", "upper": "2016-01-01"}, "is after upper"),
    ({"type": "date", "lower": "2016-01-01", "upper": "2025-12-31", "values": ["2016-01-01"]},
     "purchased_on: unknown key 'values'; expected one of: lower, type, upper"),
    ({"type": "datetime"}, "expected 'string', 'int', 'float' or 'date'"),
])
def test_date_settings_are_checked(body, fragment):
    with pytest.raises(ConfigError) as err:
        config.from_dict(_with_column(body))
    assert fragment in str(err.value)


def test_describe_shows_the_public_days(table):  # noqa: F811
    entry = next(c for c in catalog.describe(table)["columns"] if c["name"] == "purchased_on")
    assert entry == {"name": "purchased_on", "type": "date", "dates": ["2016-01-01", "2025-12-31"]}


# -- public values of date parts ------------------------------------------------------

@pytest.mark.parametrize("days,part,domain", [
    ((D(2016, 1, 1), D(2025, 12, 31)), "YEAR", tuple(range(2016, 2026))),
    ((D(2016, 1, 1), D(2025, 12, 31)), "MONTH", tuple(range(1, 13))),
    ((D(2016, 1, 1), D(2025, 12, 31)), "DOW", tuple(range(1, 8))),
    ((D(2024, 11, 15), D(2025, 2, 3)), "MONTH", (1, 2, 11, 12)),
    ((D(2024, 11, 15), D(2025, 2, 3)), "QUARTER", (1, 4)),
    ((D(2024, 2, 27), D(2024, 3, 2)), "DAY", (1, 2, 27, 28, 29)),
    ((D(2024, 2, 27), D(2024, 3, 2)), "DOW", (2, 3, 4, 5, 6)),  # Tuesday .. Saturday
    ((D(2024, 1, 1), D(2024, 12, 31)), "DAY", tuple(range(1, 32))),
])
def test_date_parts_list_the_values_the_configured_days_allow(days, part, domain):
    info = derived_bounds.analyse(DatePart(part, Col("d")), lambda n: derived_bounds.column_info(
        Column("d", "date", dates=days)))
    assert info.type == "int" and info.domain == domain and info.bounds == (domain[0], domain[-1])


# -- every engine computes the same -----------------------------------------------------

QUERIES = [
    "SELECT MONTH(purchased_on) AS m, COUNT(*) AS n, COUNT(DISTINCT customer_id) AS c "
    "FROM purchases GROUP BY m",
    "SELECT DAYOFWEEK(purchased_on) AS d, SUM(amount) AS s FROM purchases "
    "WHERE purchased_on >= DATE '2024-01-01' GROUP BY d",
    "SELECT EXTRACT(QUARTER FROM purchased_on) AS q, YEAR(purchased_on) AS y, COUNT(*) AS n "
    "FROM purchases WHERE purchased_on BETWEEN '2020-01-01' AND '2021-12-31' GROUP BY q, y",
    "SELECT region, SUM(CASE WHEN purchased_on < DATE '2020-03-01' THEN amount ELSE 0 END) AS pre, "
    "SUM(DAY(purchased_on)) AS days FROM purchases WHERE purchased_on <> '2024-12-25' GROUP BY region",
    "SELECT region, PURCHASE_RATE(DAYOFWEEK(purchased_on) >= 6 AND purchased_on > '2023-06-30') "
    "AS weekend FROM purchases GROUP BY region",
]


@pytest.mark.parametrize("sql", QUERIES, ids=[q[:60] for q in QUERIES])
def test_duckdb_computes_the_reference_aggregates(table, sql):  # noqa: F811
    plan = plan_of(table, sql)
    assert plan.bounded and all(part is not None for part in plan.bounded)
    for part in plan.bounded:
        reference = exact("polars", plan.table, part)
        assert reference.height > 0
        assert reference.equals(exact("duckdb", plan.table, part)), sql


@pytest.mark.slow
def test_spark_computes_the_reference_aggregates(table):  # noqa: F811
    for sql in QUERIES[1:4]:  # ISO days of the week, a date range and parts, a date in CASE
        plan = plan_of(table, sql)
        for part in plan.bounded:
            assert exact("polars", plan.table, part).equals(exact("spark", plan.table, part)), sql


def test_a_month_query_lists_every_month_whatever_the_filter(table):  # noqa: F811
    plan = plan_of(table, "SELECT MONTH(purchased_on) AS m, COUNT(*) AS n FROM purchases "
                          "WHERE purchased_on BETWEEN '2024-03-01' AND '2024-03-31' GROUP BY m")
    rows = execute.answer_rows(plan, execute.release(plan))
    assert [r["m"] for r in rows] == list(range(1, 13))
    assert any("1 = Monday" in note for note in plan.notes) is False
    dow = plan_of(table, "SELECT DAYOFWEEK(purchased_on) AS d, COUNT(*) AS n FROM purchases "
                         "GROUP BY d")
    assert any("1 = Monday .. 7 = Sunday" in note for note in dow.notes)


def test_days_of_the_week_are_iso_on_every_engine(table):  # noqa: F811
    """Only Mondays (2024-01-01 is one) in the filter: every row has day 1."""
    mondays = ", ".join(f"'{D(2024, 1, 1) + dt.timedelta(weeks=w)}'" for w in range(52))
    plan = plan_of(table, f"SELECT DAYOFWEEK(purchased_on) AS d, COUNT(*) AS n FROM purchases "
                          f"WHERE purchased_on IN ({mondays}) GROUP BY d")
    for engine in ("polars", "duckdb"):
        counts = exact(engine, plan.table, plan.bounded[0])
        assert counts.filter(pl.col("n") > 0)["d"].to_list() == [1], engine


def test_removing_one_customer_moves_each_aggregate_by_at_most_its_sensitivity(
        table, tmp_path, demo_data, monkeypatch):  # noqa: F811
    """Neighbouring datasets (test_derived_engines' check, run on the date queries)."""
    import test_derived_engines
    monkeypatch.setattr(test_derived_engines, "QUERIES", QUERIES)
    test_derived_engines.test_removing_one_customer_moves_each_aggregate_by_at_most_its_sensitivity(
        table, tmp_path, demo_data)


def test_no_day_in_the_data_makes_the_engines_differ(tmp_path):
    """Days before and after the configured ones, past year 9999 (DuckDB holds them, Spark
    does not) and null: rows with a null day are dropped when prepared; prepare keeps days within 0001..9999, date parts clamp to the
    configured days, and the reference and DuckDB keep the same rows and parts."""
    days = [D(2015, 12, 31), D(2016, 1, 1), D(2020, 2, 29), D(2025, 12, 31), D(2026, 1, 1),
            D(1, 1, 1), D(9999, 12, 31), D(1970, 1, 4), D(1969, 12, 29), None]
    n = 360
    frame = pl.DataFrame({"customer_id": [i % 30 for i in range(n)], "opted_in": [True] * n,
                          "region": ["Wayne"] * n, "age_band": ["18-24"] * n,
                          "category": ["snacks"] * n, "amount": [1.0] * n,
                          "purchased_on": [days[i % len(days)] for i in range(n)]})
    (tmp_path / "data").mkdir()
    frame.write_parquet(tmp_path / "data" / "p.parquet")
    _with_far_days(tmp_path / "data" / "p.parquet", tmp_path / "data" / "far.parquet")
    settings = make_settings(tmp_path, tmp_path / "data", engine="duckdb")
    odd = catalog.open_table(settings.datasets["purchases"], tmp_path / "prep", settings.engine)
    kept = pl.scan_parquet([str(f) for f in odd.files]).select(pl.len()).collect().item()
    assert kept == n - n // len(days) + 40  # rows with a null day are dropped; far.parquet's kept
    for sql in QUERIES[:4] + [
            "SELECT YEAR(purchased_on) AS y, COUNT(*) AS n FROM purchases "
            "WHERE purchased_on >= '9999-12-31' OR purchased_on < '1000-01-01' GROUP BY y"]:
        plan = plan_of(odd, sql)
        for part in plan.bounded:
            assert exact("polars", plan.table, part).equals(exact("duckdb", plan.table, part)), sql
        assert execute.answer_rows(plan, execute.release(plan))


def _with_far_days(source: Path, out: Path) -> None:
    """Rows dated in years 12000 and -50 (written by DuckDB, which holds such days)."""
    import duckdb
    con = duckdb.connect()
    try:
        con.execute(f"COPY (SELECT * REPLACE (CASE WHEN customer_id % 2 = 0 "
                    f"THEN DATE '12000-06-01' ELSE CAST(DATE '0050-01-01' - INTERVAL 40000 DAY AS DATE) END "
                    f"AS purchased_on) FROM read_parquet('{source}') LIMIT 40) "
                    f"TO '{out}' (FORMAT parquet)")
    finally:
        con.close()


def test_a_date_literal_is_never_a_data_value_in_messages():
    with pytest.raises(InvalidQuery) as err:
        parse_sql("SELECT COUNT(*) FROM purchases WHERE purchased_on > DATE 'x'")
    assert "'x' is not a date written YYYY-MM-DD" in err.value.message
