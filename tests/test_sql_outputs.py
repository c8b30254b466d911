"""Aliases, names, derived columns, HAVING and VARIANCE, end to end on the demo data."""
from __future__ import annotations

import math

import polars as pl
import pytest
from scipy import stats as scipy_stats

from dpquery.engine import catalog, execute, plan as planner, postprocess
from dpquery.engine.outputs import Arith, Const, Ref
from dpquery.engine.query import Request, Spend, canonical
from dpquery.engine.request import parse_body
from dpquery.service import describe_plan
from settings_helpers import make_settings


@pytest.fixture()
def env(settings):
    return settings, {"purchases": catalog.open_table(settings.datasets["purchases"])}


def answer(env, sql: str, epsilon: float = 1.0):
    settings, tables = env
    request = parse_body({"sql": sql, "epsilon": epsilon}, datasets=settings.datasets)
    plan = planner.build(request, catalog.check_query(request.query, tables))
    return plan, execute.answer_rows(plan, execute.release(plan))


def test_a_group_alias_renames_rows_columns_and_order_by(env):
    plan, rows = answer(env, "SELECT region AS county, COUNT(*) AS n FROM purchases "
                             "GROUP BY region ORDER BY county DESC")
    assert describe_plan(plan)["columns"] == ["county", "n", "n_ci_low", "n_ci_high"]
    assert [r["county"] for r in rows] == sorted((r["county"] for r in rows), reverse=True)
    assert all(set(r) == {"county", "n", "n_ci_low", "n_ci_high"} for r in rows)


def test_names_are_case_insensitive_and_schema_qualified_tables_map(env):
    settings, _ = env
    plain = parse_body({"sql": "SELECT region, COUNT(DISTINCT customer_id) FROM purchases "
                        "GROUP BY region", "epsilon": 1}, datasets=settings.datasets)
    shouted = parse_body({"sql": 'SELECT "Region", COUNT(DISTINCT Customer_ID) FROM '
                          "shop.PURCHASES GROUP BY REGION", "epsilon": 1},
                         datasets=settings.datasets)
    assert canonical(plain) == canonical(shouted)


def test_the_same_aliased_query_has_the_same_canonical_text(env):
    settings, _ = env
    sql = "SELECT region AS c, SUM(amount) / COUNT(*) AS t FROM purchases GROUP BY 1 HAVING t > 1"
    a, b = (parse_body({"sql": sql, "epsilon": 1}, datasets=settings.datasets) for _ in range(2))
    assert canonical(a) == canonical(b)
    old = Request(parse_body({"sql": "SELECT COUNT(*) FROM purchases", "epsilon": 1}).query,
                  Spend(epsilon=1))
    assert '"select"' not in canonical(old) and '"having"' not in canonical(old)


def test_derived_column_interval_contains_its_value_and_notes_the_union_bound(env):
    plan, rows = answer(env, "SELECT year, SUM(amount) / COUNT(*) AS avg_ticket, "
                             "100 * PURCHASE_RATE(category = 'snacks') AS pct FROM purchases "
                             "GROUP BY year", epsilon=2.0)
    assert len(rows) == 10 and {"sum_amount", "count"} <= {a.alias for a in plan.request.query.aggregates}
    for r in rows:
        if r["avg_ticket_ci_low"] is not None:
            assert r["avg_ticket_ci_low"] <= r["avg_ticket"] <= r["avg_ticket_ci_high"]
        assert 0 <= r["pct_ci_low"] <= r["pct_ci_high"] <= 100
    assert any("at least 90% confidence" in n for n in plan.notes)


def test_having_filters_the_noisy_rows(env):
    _plan, rows = answer(env, "SELECT category, COUNT(*) AS n FROM purchases GROUP BY category "
                              "HAVING n > 5000")
    assert all(r["n"] > 5000 for r in rows)


def test_interval_arithmetic():
    row = {"a": 10.0, "a_ci_low": 8.0, "a_ci_high": 12.0, "b": 2.0, "b_ci_low": 1.0,
           "b_ci_high": 4.0}
    assert postprocess.evaluate(Arith("/", Ref("a"), Ref("b")), row) == (5.0, 2.0, 12.0)
    assert postprocess.evaluate(Arith("-", Ref("a"), Ref("b")), row) == (8.0, 4.0, 11.0)
    assert postprocess.evaluate(Arith("*", Const(2), Ref("a")), row) == (20.0, 16.0, 24.0)
    spans_zero = {**row, "b_ci_low": -1.0}
    assert postprocess.evaluate(Arith("/", Ref("a"), Ref("b")), spans_zero)[1:] == (None, None)


def _true_variance(table, sample: bool) -> float:
    """The variance of the bounded values the release sees (rows kept by the row bound)."""
    ds = table.dataset
    from dpquery.engine.prepare import ROW_RANK
    values = table.frame.filter(pl.col(ROW_RANK) < ds.rows_per_customer) \
        .select(pl.col("amount").clip(0, 100)).collect()["amount"]
    return float(values.var(ddof=1 if sample else 0))


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_variance_intervals_cover_the_bounded_variance(tmp_path, demo_data, engine):
    """Coverage of the 95% interval over 60 releases: a binomial test, p-value floor 1e-3;
    on OpenDP's polars plan and on DuckDB's squares cell with OpenDP's vector noise."""
    settings = make_settings(tmp_path, demo_data, engine=engine)
    env = settings, {"purchases": catalog.open_table(settings.datasets["purchases"])}
    _settings, tables = env
    plan, _rows = answer(env, "SELECT VAR_POP(amount) AS v FROM purchases", epsilon=1.0)
    assert plan.table.engine == engine and plan.bounded[0] is not None  # duckdb: released there
    truth = _true_variance(tables["purchases"], sample=False)
    hits, widths = 0, []
    for _ in range(60):
        row = execute.answer_rows(plan, execute.release(plan))[0]
        hits += row["v_ci_low"] <= truth <= row["v_ci_high"]
        widths.append(row["v_ci_high"] - row["v_ci_low"])
    p = scipy_stats.binomtest(hits, 60, 0.95, alternative="less").pvalue
    assert p > 1e-3, f"{hits}/60 intervals covered the variance"
    assert min(widths) < 2500  # informative: narrower than the whole range [0, 50²]
    assert math.isfinite(truth)
