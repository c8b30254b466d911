"""Derived columns on every engine: identical bounded aggregates, bounded influence of one
customer, answers with every public key, and the second dataset.

The reference (OpenDP's polars plan run without noise, over the table's frame
with the derived columns added by `with_columns`) and DuckDB (the same
expressions compiled into `SELECT *, <expr> AS name FROM <parts>`) must agree
exactly on shared data with a fixed bounding key.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dpquery.engine import bounded, catalog, engines, execute, plan as planner
from dpquery.engine.request import parse_body
from settings_helpers import make_settings
from test_second_dataset import GYM, ask, gym  # noqa: F401  (gym: the second dataset's fixture)

QUERIES = [  # every part of each runs on the engines (integer cells)
    "SELECT region, COUNT(*) AS n FROM purchases WHERE CASE WHEN category IN ('snacks', "
    "'beverages') THEN 'treat' ELSE 'staple' END = 'treat' GROUP BY region",
    "SELECT SUM(FLOOR(amount / 10) * 10) AS s, SUM(CASE WHEN year >= 2020 THEN ROUND(amount) "
    "ELSE 0 END) AS recent, AVG(CEIL(amount / 5)) AS a FROM purchases",
    "SELECT CASE WHEN age_band IN ('18-24', '25-34') THEN 'young' ELSE 'older' END AS stage, "
    "COUNT(*) AS n, COUNT(DISTINCT customer_id) AS c FROM purchases GROUP BY stage",
    "SELECT FLOOR(amount / 10) * 10 AS bucket, COUNT(*) AS n, SUM(year - 2016) AS y "
    "FROM purchases WHERE amount * 2 > 3 GROUP BY bucket",
    "SELECT year - 2016 AS since, amount > 50 AS big, COUNT(DISTINCT customer_id) AS c "
    "FROM purchases GROUP BY since, big",
    "SELECT region, PURCHASE_RATE(LEAST(amount, 40) - 20 >= 0 AND year > 2018) AS r "
    "FROM purchases GROUP BY region",
    "SELECT CASE WHEN region IN ('Wayne', 'Oakland', 'Macomb') THEN 'metro' ELSE 'outstate' END "
    "AS area, SUM(ABS(year - 2020) + CLAMP(year - 2018, 0, 3)) AS d FROM purchases "
    "GROUP BY area",
    "SELECT region, SUM(CASE WHEN category IN ('produce', 'health_food') THEN amount ELSE 0 END) "
    "AS healthy, AVG(COALESCE(amount, 0)) AS a FROM purchases GROUP BY region",
]


@pytest.fixture(scope="module")
def table(tmp_path_factory, demo_data):
    tmp = tmp_path_factory.mktemp("derived-engines")
    settings = make_settings(tmp, demo_data, engine="duckdb")
    return catalog.open_table(settings.datasets["purchases"], tmp / "prep", settings.engine)


def plan_of(table, sql: str, spend: float = 1.0):
    request = parse_body({"sql": sql, "epsilon": spend},
                         datasets={"purchases": table.dataset})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def exact(engine: str, table, part) -> pl.DataFrame:
    out = engines.aggregate(engine, table, part)
    return out.sort(list(part.by)) if part.by else out


@pytest.mark.parametrize("sql", QUERIES, ids=[q[:60] for q in QUERIES])
def test_duckdb_computes_the_reference_aggregates(table, sql):
    plan = plan_of(table, sql)
    assert plan.bounded and all(part is not None for part in plan.bounded)
    for part in plan.bounded:
        reference, other = exact("polars", plan.table, part), exact("duckdb", plan.table, part)
        assert reference.height > 0
        assert reference.equals(other), sql


@pytest.mark.slow
def test_spark_computes_the_reference_aggregates(table):
    plan = plan_of(table, QUERIES[3])
    for part in plan.bounded:
        assert exact("polars", plan.table, part).equals(exact("spark", plan.table, part))


def test_a_grouped_expression_answers_every_public_key(table):
    plan = plan_of(table, QUERIES[3])
    rows = execute.answer_rows(plan, execute.release(plan))
    assert [r["bucket"] for r in rows] == list(range(0, 101, 10))
    assert any("Row-level expressions (bucket, expr1, expr2)" in note for note in plan.notes)


def test_a_conditional_sum_is_as_accurate_as_a_filtered_sum(table):
    """CASE WHEN ... THEN amount ELSE 0 END keeps amount's resolution and customer total
    bound: the same noise as SUM(amount) with the condition in WHERE."""
    selected = plan_of(table, "SELECT SUM(CASE WHEN year > 2020 THEN amount ELSE 0 END) AS s "
                              "FROM purchases")
    filtered = plan_of(table, "SELECT SUM(amount) AS s FROM purchases WHERE year > 2020")
    assert [sp.scale for sp in selected.stats] == [sp.scale for sp in filtered.stats]
    assert selected.bounded[0].cells[0].kind == "total"


def test_fractional_expressions_are_released_by_the_reference(table):
    plan = plan_of(table, "SELECT region, SUM(amount * 1.06) AS s, AVG(amount / 2) AS a "
                          "FROM purchases GROUP BY region")
    assert all(part is None for part in plan.bounded)
    rows = execute.answer_rows(plan, execute.release(plan))
    assert len(rows) == 12 and all(r["s_ci_low"] <= r["s_ci_high"] for r in rows)


def test_removing_one_customer_moves_each_aggregate_by_at_most_its_sensitivity(
        table, tmp_path, demo_data):
    """Neighbouring datasets: the bounded aggregates over derived columns, with and without
    the customer who has the most rows, differ by at most the sensitivity noise is sized for."""
    rows = pl.scan_parquet(str(Path(demo_data) / "**" / "*.parquet"))
    heavy = rows.filter(pl.col("opted_in")).group_by("customer_id").len() \
        .sort("len", descending=True).collect()[0, 0]
    (tmp_path / "data").mkdir()
    rows.filter(pl.col("customer_id") != heavy).collect().write_parquet(tmp_path / "data" / "p.parquet")
    settings = make_settings(tmp_path, tmp_path / "data", engine="duckdb")
    key_dir = Path(table.files[0]).parent.parent  # the same bounding key as `table`
    neighbour = catalog.open_table(settings.datasets["purchases"], key_dir, settings.engine)
    for sql in QUERIES:
        plan, other = plan_of(table, sql), plan_of(neighbour, sql)
        for part, part_n in zip(plan.bounded, other.bounded):
            full = exact("duckdb", plan.table, part)
            less = exact("duckdb", other.table, part_n)
            joined = full.join(less, on=list(part.by), how="full", coalesce=True, suffix="_n") \
                if part.by else pl.concat([full, less.rename(lambda c: c + "_n")], how="horizontal")
            for cell in part.cells:
                change = (joined[cell.name].fill_null(0) - joined[f"{cell.name}_n"].fill_null(0))
                assert change.abs().sum() <= bounded.sensitivity(part, cell, "l1"), (sql, cell)
                assert change.abs().sum() > 0 or cell.kind == "flag"  # the customer was there


def test_the_second_dataset_answers_derived_columns(gym):  # noqa: F811
    rows = ask(gym, "SELECT CASE WHEN minutes >= 60 THEN 'long' ELSE 'short' END AS visit, "
                    "club, COUNT(*) AS n, SUM(FLOOR(minutes / 15) * 15) AS quarter_hours "
                    "FROM gym_visits WHERE season - 2023 = 1 GROUP BY visit, club")
    assert {(r["visit"], r["club"]) for r in rows} == \
        {(v, c) for v in ("long", "short") for c in GYM["columns"]["club"]["values"]}


def test_a_held_answer_is_reused_only_for_the_same_expressions(table):
    """Free derived answers (dpquery/derive.py) compare cells by column name: an expression
    named alike but computed otherwise must not match a held answer."""
    import json

    from dpquery import derive
    from dpquery.engine.query import canonical

    def model(sql):
        request = parse_body({"sql": sql, "epsilon": 1.0}, datasets={"purchases": table.dataset})
        return (json.loads(canonical(request))["query"],
                catalog.check_query(request.query, {"purchases": table}))
    held = "SELECT FLOOR(amount / 10) * 10 AS b, region, COUNT(*) AS n FROM purchases GROUP BY b, region"
    have, _ = model(held)
    other, extended = model(held.replace("/ 10) * 10", "/ 20) * 20"))
    assert derive._match(other, have, extended, 1) is None
    coarser, extended = model("SELECT FLOOR(amount / 10) * 10 AS b, COUNT(*) AS n FROM purchases "
                              "GROUP BY b")
    assert derive._match(coarser, have, extended, 1) is not None


def test_the_service_charges_once_and_refuses_for_free(svc):
    """Through the pipeline: a derived query is charged once (its repeat is the stored
    answer), and a refused one (unlistable GROUP BY) costs nothing."""
    from budget.amounts import Amount
    from dpquery.errors import InvalidQuery
    from test_service import add_partner

    pid = add_partner(svc)
    body = {"sql": "SELECT FLOOR(amount / 25) * 25 AS tier, COUNT(*) AS n FROM purchases "
                   "GROUP BY tier", "epsilon": 0.25}
    first = svc.run(pid, body)
    again = svc.run(pid, dict(body))
    assert [r["tier"] for r in first["rows"]] == [0, 25, 50, 75, 100]
    assert again["rows"] == first["rows"]
    with pytest.raises(InvalidQuery, match="Use wider buckets"):
        svc.run(pid, {"sql": "SELECT FLOOR(amount * 100) AS c, COUNT(*) FROM purchases "
                             "GROUP BY c", "epsilon": 0.25})
    assert svc.ledger.spent(pid, "purchases").epsilon == Amount(epsilon=0.25).epsilon


def test_no_data_value_makes_an_expression_fail_or_differ(tmp_path):
    """NaN, infinities and values far outside the configured bounds: every expression is
    computed from clamped inputs, so no engine fails (a data-dependent error would leak)
    and both compute the same bounded aggregates."""
    from dpquery import config
    odd = [float("nan"), float("inf"), -float("inf"), 1e308, -5.0, 500.0, 0.0, 45.5]
    n = 400
    pl.DataFrame({
        "member_no": [i % 40 for i in range(n)], "consented": [True] * n,
        "club": [["North", "South", "East"][i % 3] for i in range(n)],
        "dept": [["pool", "weights", "yoga"][i % 3] for i in range(n)],
        "season": [2023 + i % 2 for i in range(n)],
        "minutes": [odd[i % len(odd)] for i in range(n)],
    }).write_parquet(tmp_path / "odd.parquet")
    minutes = {k: v for k, v in GYM["columns"]["minutes"].items() if k != "resolution"}
    odd_gym = {**GYM, "path": str(tmp_path / "odd.parquet"),  # prepare cannot take NaN to units
               "columns": {**GYM["columns"], "minutes": minutes}}
    raw = {"ledger": {"path": str(tmp_path / "ledger.db")}, "datasets": {"gym_visits": odd_gym}}
    settings = config.from_dict(raw, base=tmp_path)
    gym_table = catalog.open_table(settings.datasets["gym_visits"], tmp_path / "prep",
                                   settings.engine)
    for sql in ["SELECT FLOOR(minutes / 30) * 30 AS b, COUNT(*) AS n, SUM(ROUND(minutes)) AS s "
                "FROM gym_visits GROUP BY b",
                "SELECT club, SUM(CASE WHEN minutes / (season - 2022) > 60 THEN 1 ELSE 0 END) AS "
                "long, COUNT(*) AS n FROM gym_visits WHERE CEIL(minutes) BETWEEN 0 AND 180 "
                "GROUP BY club",
                "SELECT SUM(CASE WHEN dept = 'yoga' THEN minutes ELSE 0 END) AS yoga, "
                "AVG(LEAST(minutes, 90)) AS a FROM gym_visits"]:
        request = parse_body({"sql": sql, "epsilon": 1.0}, datasets=settings.datasets)
        extended = catalog.check_query(request.query, {"gym_visits": gym_table})
        plan = planner.build(request, extended)
        for part in filter(None, plan.bounded):  # a fractional sum runs on the reference only
            assert exact("polars", extended, part).equals(exact("duckdb", extended, part)), sql
        assert execute.answer_rows(plan, execute.release(plan))
