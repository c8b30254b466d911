"""The reference path's group truncation: done before OpenDP's measurement, stated to its
map as a bound (dpquery/engine/reference.py), so keeping G groups is charged G, not G + 1.

- stability: removing one customer changes the truncated data in that customer's rows
  only, and the customer's rows fall in at most G groups;
- the charge: OpenDP's map with the stated bound equals its map of its own in-plan
  truncation read as G groups (`rank < G`), for every shape that truncates groups;
- what is kept: customers in three clubs keep two when the bound is two.
"""
from __future__ import annotations

import dataclasses
import random

import polars as pl
import pytest

from dpquery import config
from dpquery.engine import catalog, execute, frames, plan as planner
from dpquery.engine.query import Compare
from dpquery.engine.reference import GroupTruncation, Reference
from dpquery.engine.request import parse_body
from test_second_dataset import GYM

UNIT = "member_no"
SHAPES = [  # every reference shape that truncates groups, grouped by one and two columns
    "SELECT club, COUNT(DISTINCT member_no) AS n FROM gym_visits GROUP BY club",
    "SELECT club, PURCHASE_RATE(dept = 'yoga') AS r FROM gym_visits GROUP BY club",
    "SELECT club, SUM(minutes) AS s FROM gym_visits WHERE season = 2024 GROUP BY club",
    "SELECT club, MEDIAN(minutes) AS m FROM gym_visits GROUP BY club",
    "SELECT club, season, COUNT(DISTINCT member_no) AS n FROM gym_visits GROUP BY club, season",
    "SELECT club, season, MEDIAN(minutes) AS m FROM gym_visits WHERE dept = 'pool' "
    "GROUP BY club, season",
]
MEMBERS = 400


@pytest.fixture(scope="module")
def gym(tmp_path_factory):
    """Every member visits all three clubs; a member may count in two (polars engine)."""
    tmp = tmp_path_factory.mktemp("gym-groups")
    n = MEMBERS * 9
    pl.DataFrame({
        "member_no": [i % MEMBERS for i in range(n)], "consented": [True] * n,
        "club": [["North", "South", "East"][(i // MEMBERS) % 3] for i in range(n)],
        "dept": [["pool", "weights", "yoga"][(i // 7) % 3] for i in range(n)],
        "season": [2023 + (i // 13) % 2 for i in range(n)],
        "minutes": [float(10 + (i * 37) % 150) for i in range(n)],
    }).write_parquet(tmp / "visits.parquet")
    columns = {**GYM["columns"], "club": {**GYM["columns"]["club"], "groups_per_customer": 2},
               "minutes": {**GYM["columns"]["minutes"], "customer_total_upper": 600.0}}
    raw = {"ledger": {"path": str(tmp / "ledger.db")},
           "datasets": {"gym_visits": {**GYM, "engine": "polars", "columns": columns,
                                       "path": str(tmp / "visits.parquet")}}}
    settings = config.from_dict(raw, base=tmp)
    table = catalog.open_table(settings.datasets["gym_visits"], tmp / "prep", settings.engine)
    return settings, {"gym_visits": table}


def plan_of(gym, sql: str, measure: str = "pure", spend: float = 1.0):
    settings, tables = gym
    if measure == "zcdp":
        table = tables["gym_visits"]
        ds = dataclasses.replace(table.dataset, measure="zcdp")
        tables = {"gym_visits": dataclasses.replace(table, dataset=ds)}
    key = "rho" if measure == "zcdp" else "epsilon"
    request = parse_body({"sql": sql, key: spend}, datasets=settings.datasets)
    return planner.build(request, catalog.check_query(request.query, tables))


def test_truncation_changes_only_the_removed_customers_rows():
    """Neighbouring datasets in, neighbouring datasets out, the customer in <= G groups."""
    rng = random.Random(3)
    rows = pl.DataFrame({
        "id": [rng.randrange(30) for _ in range(600)],
        "region": [rng.choice("ABCDE") for _ in range(600)],
        "year": [rng.choice([2023, 2024, 2025]) for _ in range(600)],
        "amount": [rng.random() * 100 for _ in range(600)],
    }).with_row_index("row")
    for by, groups in ((("region",), 2), (("region", "year"), 3), (("year",), 1)):
        for where in (None, Compare("amount", "<", 60.0)):
            cut = GroupTruncation("id", by, groups, where)
            full = cut.apply(rows.lazy()).collect()
            for gone in range(0, 30, 7):
                less = cut.apply(rows.lazy().filter(pl.col("id") != gone)).collect()
                assert full.filter(pl.col("id") != gone).sort("row").equals(less.sort("row"))
                mine = full.filter(pl.col("id") == gone)
                assert 0 < mine.select(by).unique().height <= groups
                if where is not None:
                    assert (mine["amount"] < 60.0).all()


@pytest.mark.parametrize("measure", ["pure", "zcdp"])
@pytest.mark.parametrize("sql", SHAPES)
def test_the_charge_is_for_the_groups_kept(gym, monkeypatch, sql, measure):
    """At the plan's own scales, OpenDP's map with G stated equals its map of its own
    truncation `rank("dense") < G` inside the plan (which OpenDP reads as G groups), and
    the parts' losses add up to the charge."""
    plan = plan_of(gym, sql, measure)
    truncated = [m for m in plan.measurements if m.truncation is not None]
    assert truncated and all(m.truncation.groups == plan.context.groups for m in truncated)
    g = plan.context.groups
    orig_where = frames.where

    def where_then_rank(frame, pred):  # OpenDP's own form, as dpquery used to plan it
        key = pl.struct(*plan.context.by)
        return orig_where(frame, pred).filter(key.rank("dense").over(UNIT) < g)

    monkeypatch.setattr(frames, "where", where_then_rank)
    in_plan = [plan.context.measurement(shape, sps) for shape, sps in plan.parts]
    monkeypatch.undo()
    for ours, theirs in zip(plan.measurements, in_plan):
        if ours.truncation is not None:
            assert ours.map() == pytest.approx(Reference(theirs.measurement).map(), rel=1e-9)
    delivered = sum(Reference(m.measurement, m.truncation).map() for m in plan.measurements)
    assert delivered <= plan.cost and delivered == pytest.approx(plan.cost, rel=1e-6)


def test_a_member_of_three_clubs_counts_in_two(gym):
    """G = 2 groups kept per customer: the distinct members over the clubs add to 2 x MEMBERS
    (Laplace scale 1 per club at ε = 2: the total is off by a few, never by MEMBERS)."""
    plan = plan_of(gym, SHAPES[0], spend=2.0)
    rows = execute.answer_rows(plan, execute.release(plan))
    total = sum(r["n"] for r in rows)
    assert len(rows) == 3 and abs(total - 2 * MEMBERS) < 60
