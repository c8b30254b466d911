"""Every engine computes the reference's exact bounded aggregates; OpenDP's maps agree.

The polars engine is OpenDP's own bounded plan (frames.py) run without noise:
the reference. Other engines must return identical aggregates for every query
shape on shared data with a fixed bounding key.
"""
from __future__ import annotations

import polars as pl
import pytest

from dpquery.engine import catalog, engines, execute, noise, plan as planner, vector_plan
from dpquery.engine.request import parse_body
from settings_helpers import make_settings

ENGINES = ["duckdb", "spark"]  # compared against "polars", the reference

AGGS = ["COUNT(*) AS a", "COUNT(DISTINCT customer_id) AS a", "SUM(amount) AS a",
        "AVG(amount) AS a", "PURCHASE_RATE(category = 'snacks' AND year >= 2020) AS a"]
WHERES = ["", "WHERE category = 'snacks'",
          "WHERE (year = 2024 OR year = 2023) AND NOT category = 'produce'",
          "WHERE region IN ('Wayne', 'Oakland') AND year BETWEEN 2020 AND 2024 AND amount >= 5",
          "WHERE category NOT IN ('snacks', 'dairy') OR year <> 2016",
          "WHERE region = 'Hillsdale' AND age_band = '18-24' AND amount > 99.5"]  # nearly empty
GROUPS = ["", "region", "age_band, category", "region, age_band, year"]


def combos(engine: str) -> list[tuple[str, str]]:
    """Every WHERE with every GROUP BY; Spark (about a second per job in local mode) runs 14
    of the 24 per aggregate instead: each WHERE with two GROUP BYs and each GROUP BY with
    three or four WHEREs, no WHERE with every GROUP BY (rows and customers shapes, none, one
    and several group columns, truncation to G groups; WHERE on and off)."""
    if engine == "spark":
        n = len(GROUPS)
        return ([(w, GROUPS[i % n]) for i, w in enumerate(WHERES)]
                + [(w, GROUPS[(i + 2) % n]) for i, w in enumerate(WHERES)]
                + [("", GROUPS[1]), ("", GROUPS[3])])
    return [(w, g) for w in WHERES for g in GROUPS]


@pytest.fixture(scope="module")
def table(tmp_path_factory, demo_data):
    tmp = tmp_path_factory.mktemp("engines")
    settings = make_settings(tmp, demo_data, engine="duckdb")
    return catalog.open_table(settings.datasets["purchases"], tmp / "prep", settings.engine)


def plan_of(table, sql: str, spend: float = 1.0, **extra):
    key = "rho" if table.dataset.measure == "zcdp" else "epsilon"
    request = parse_body({"sql": sql, key: spend, **extra})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def sql_of(agg: str, where: str, group: str) -> str:
    select = f"{group}, {agg}" if group else agg
    tail = f" GROUP BY {group}" if group else ""
    return f"SELECT {select} FROM purchases {where}{tail}"


def exact(engine: str, table, part) -> pl.DataFrame:
    out = engines.aggregate(engine, table, part)
    return out.sort(list(part.by)) if part.by else out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("agg", AGGS)
def test_identical_bounded_aggregates_for_every_shape(table, engine, agg):
    for where, group in combos(engine):
        plan = plan_of(table, sql_of(agg, where, group))
        assert all(part is not None for part in plan.bounded)
        for part in plan.bounded:
            reference, other = exact("polars", table, part), exact(engine, table, part)
            assert reference.equals(other), sql_of(agg, where, group)


def test_the_row_bound_is_applied(table):
    plan = plan_of(table, "SELECT COUNT(*) AS n FROM purchases")
    bounded = exact("duckdb", table, plan.bounded[0])["n"].item()
    all_rows = table.frame.select(pl.len()).collect().item()
    capped = table.frame.group_by("customer_id").len().select(
        pl.col("len").clip(0, table.dataset.rows_per_customer).sum()).collect().item()
    assert bounded == capped < all_rows


def test_customers_keep_their_first_groups_in_key_order(table):
    plan = plan_of(table, "SELECT region, COUNT(DISTINCT customer_id) AS c FROM purchases GROUP BY region")
    part = plan.bounded[0]
    assert part.groups == 2
    total = exact("duckdb", table, part)["c"].sum()
    per = table.frame.group_by("customer_id").agg(pl.col("region").n_unique().clip(0, 2)).collect()
    assert total == per["region"].sum()


def test_quantiles_and_float_sums_stay_on_the_reference(table):
    plan = plan_of(table, "SELECT region, MEDIAN(amount) AS m, COUNT(*) AS n FROM purchases GROUP BY region")
    shapes = {shape: part for (shape, _), part in zip(plan.parts, plan.bounded)}
    assert shapes["group_rows"] is None and shapes["rows"] is not None


@pytest.mark.parametrize("measure", ["pure", "zcdp"])
@pytest.mark.parametrize("agg", AGGS)
def test_charge_equals_what_the_engine_noise_delivers(tmp_path, demo_data, measure, agg):
    """For every shape, OpenDP's map of the released vector measurements equals the charge.

    The reference (OpenDP's polars plan, its group truncation stated as a bound,
    reference.py) costs exactly as much at the same scale: G groups kept, G charged.
    """
    settings = make_settings(tmp_path, demo_data, engine="duckdb", measure=measure)
    table = catalog.open_table(settings.datasets["purchases"], tmp_path / "prep", settings.engine)
    for group in GROUPS:
        plan = plan_of(table, sql_of(agg, "", group))
        name, delivered = plan.measure, 0.0
        for part, (_shape, sps) in zip(plan.bounded, plan.parts):
            for sp in sps:
                ours = noise.loss(sp.param, name, vector_plan.stat_sensitivity(part, sp, name))
                reference = plan.context.single_loss(sp.stat, sp.param)
                delivered += ours
                assert ours == pytest.approx(reference, rel=1e-6) and ours <= sp.share
        assert delivered == pytest.approx(plan.cost, rel=1e-6) and delivered <= plan.cost


def test_an_engine_answer_has_every_key_interval_and_spend(table):
    plan = plan_of(table, "SELECT region, age_band, AVG(amount) AS m, PURCHASE_RATE(category = "
                          "'snacks') AS r FROM purchases WHERE region = 'Wayne' GROUP BY region, age_band")
    rows = execute.answer_rows(plan, execute.release(plan))
    assert len(rows) == 12 * 6
    assert all(r["r_ci_low"] <= r["r_ci_high"] and r["m_ci_low"] <= r["m_ci_high"] for r in rows)
    assert plan.cost == 1.0


def test_an_unknown_or_missing_engine_stops_start_up(tmp_path, demo_data):
    from dpquery.errors import ConfigError
    with pytest.raises(ConfigError, match="datasets.purchases.engine: unknown engine 'sqlite'"):
        make_settings(tmp_path, demo_data, engine="sqlite")
