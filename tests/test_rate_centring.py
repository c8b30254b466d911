"""A purchase rate's numerator is centred: Σ(matched − 1/2) over customers (mechanisms._sign_stat).

- the answer states it: `center` 0.5 in the numerator's noise entry, and each rate is
  1/2 + numerator / denominator of its released parts;
- half the noise: at the same spend the numerator's scale (rate units) is half the
  denominator's (customers), where the former 0/1 numerator's equalled it;
- exact cells: the sign cell is 2 · (customers with a matching row) − customers, and
  removing one customer moves it by 1 in each of its groups (at most G);
- a rate held from before (no `center`) is not a source for a derived answer.
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from dpquery import derive
from dpquery.engine import bounded, catalog, engines, plan as planner
from dpquery.service import describe_plan
from settings_helpers import make_settings
from test_derive import partner

RATE = ("SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS r FROM purchases "
        "GROUP BY region, age_band")
FILTERED = ("SELECT region, PURCHASE_RATE(category = 'snacks') AS r FROM purchases "
            "WHERE age_band = '25-34' GROUP BY region")


def test_the_answer_states_the_centre_and_half_the_noise(svc):
    out = svc.run(partner(svc), {"sql": RATE, "epsilon": 1})
    (agg,) = out["aggregates"]
    num, den = (next(e for e in agg["noise"] if e["statistic"] == s) for s in ("num", "den"))
    assert num["center"] == 0.5 and "center" not in den
    assert num["scale"] == pytest.approx(den["scale"] / 2)
    parts = {(p["region"], p["age_band"]): p for p in out["released_parts"]}
    for row in out["rows"]:
        p = parts[(row["region"], row["age_band"])]
        if p["r.den"] > 0 and 0 < row["r"] < 1:  # not clipped to the domain
            assert row["r"] == pytest.approx(0.5 + p["r.num"] / p["r.den"])


def test_the_sign_cell_is_twice_the_matches_minus_the_customers(svc):
    request = svc.parse({"sql": RATE, "epsilon": 1})
    table = catalog.check_query(request.query, svc.tables)
    part = planner.build(request, table).bounded[0]
    sign, den = part.cells
    assert sign.kind == "sign" and bounded.sensitivity(part, sign, "l1") == part.groups
    flag = bounded.Cell("f", "flag", condition=sign.condition)
    for engine in ("polars", "duckdb"):
        got = engines.aggregate(engine, table, part).sort(list(part.by))
        flags = engines.aggregate(engine, table, bounded.Part(
            part.shape, part.unit, part.by, part.where, (flag, den), part.rows_per_customer,
            part.groups, part.max_groups)).sort(list(part.by))
        assert got[sign.name].to_list() == (2 * flags["f"] - flags[den.name]).to_list()


def test_removing_one_customer_moves_each_group_by_one(svc, tmp_path, demo_data):
    rows = pl.scan_parquet(str(Path(demo_data) / "**" / "*.parquet")).filter(pl.col("opted_in"))
    gone = rows.select(pl.col("customer_id").first()).collect().item()
    (tmp_path / "less").mkdir()
    rows.filter(pl.col("customer_id") != gone).collect() \
        .write_parquet(tmp_path / "less" / "p.parquet")
    request = svc.parse({"sql": RATE, "epsilon": 1})
    table = catalog.check_query(request.query, svc.tables)
    part = planner.build(request, table).bounded[0]
    settings = make_settings(tmp_path, tmp_path / "less")
    key_dir = Path(table.files[0]).parent.parent  # the same bounding key as `table`
    other = catalog.open_table(settings.datasets["purchases"], key_dir, settings.engine)
    full = engines.aggregate("duckdb", table, part)
    less = engines.aggregate("duckdb", other, part)
    joined = full.join(less, on=list(part.by), how="full", coalesce=True, suffix="_n")
    change = (joined["r.num"].fill_null(0) - joined["r.num_n"].fill_null(0)).abs()
    assert set(change.to_list()) <= {0, 1} and 1 <= change.sum() <= part.groups


class WithoutCentre:
    """The partner's ledger as an older version stored answers: no `center` recorded."""

    def __init__(self, ledger):
        self.ledger = ledger

    def reservations(self, *args):
        return self.ledger.reservations(*args)

    def get_answer(self, partner_id, request_id):
        answer = json.loads(self.ledger.get_answer(partner_id, request_id))
        for agg in answer["aggregates"]:
            for entry in agg["noise"]:
                entry.pop("center", None)
        return json.dumps(answer)


def test_a_rate_held_without_a_centre_is_not_a_source(svc):
    pid = partner(svc)
    svc.run(pid, {"sql": RATE, "epsilon": 1})
    request = svc.parse({"sql": FILTERED, "epsilon": 1})
    table = catalog.check_query(request.query, svc.tables)
    plan = planner.build(request, table)
    assert derive.find(svc.ledger, pid, request, table, plan, describe_plan) is not None
    assert derive.find(WithoutCentre(svc.ledger), pid, request, table, plan, describe_plan) is None
