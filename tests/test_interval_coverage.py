"""Ratio intervals (PURCHASE_RATE, AVG) cover about as often as they promise.

Many real releases (execute.release) of a 72-cell table whose cells hold 200
to 3,000 customers (up to ~15,000 purchases): the 95% intervals must cover the
contribution-bounded truth 94-97% of the time, on both measures. Each check is
paired with one showing that intervals 20% narrower are caught, so the test
can fail. Noise here comes from the real mechanism; nothing is seeded.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy import stats as st

from settings_helpers import make_settings
from dpquery.engine import catalog, execute, plan as planner
from dpquery.engine.request import parse_body

pytestmark = pytest.mark.slow
REGIONS = ["Washtenaw", "Wayne", "Oakland", "Macomb", "Monroe", "Lenawee",
           "Jackson", "Livingston", "Ingham", "Hillsdale", "Calhoun", "Kalamazoo"]
AGES = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
SQL = ("SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS r, AVG(amount) AS m "
       "FROM purchases GROUP BY region, age_band")
ROWS_PER_CUSTOMER = 5  # every customer has 1-5 rows: the bounded truth is the plain truth
SPEND = {"pure": {"epsilon": 2.0}, "zcdp": {"rho": 0.5}}


def cells_frame(seed: int = 5) -> pl.DataFrame:
    """One customer per (region, age band) cell; cells of 200-3,000 customers."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ["customer_id", "region", "age_band", "opted_in", "purchased_on",
                            "category", "amount"]}
    cid = 0
    for region in REGIONS:
        for age in AGES:
            size = int(np.exp(rng.uniform(np.log(200), np.log(3000))))
            p_snack, mean = rng.uniform(0.02, 0.95), rng.uniform(5, 95)
            for _ in range(size):
                cid += 1
                snacker = rng.random() < p_snack
                for j in range(int(rng.integers(1, ROWS_PER_CUSTOMER + 1))):
                    cols["customer_id"].append(cid)
                    cols["region"].append(region)
                    cols["age_band"].append(age)
                    cols["opted_in"].append(True)
                    cols["purchased_on"].append(dt.date(2024, 1 + j, 1))
                    cols["category"].append("snacks" if snacker and j == 0 else "dairy")
                    cols["amount"].append(round(float(np.clip(rng.normal(mean, 20), 0, 120)), 2))
    return pl.DataFrame(cols)


def truth(frame: pl.DataFrame) -> pl.DataFrame:
    per_customer = frame.group_by("region", "age_band", "customer_id").agg(
        (pl.col("category") == "snacks").any().alias("snacker"))
    rate = per_customer.group_by("region", "age_band").agg(pl.col("snacker").mean().alias("r_true"))
    mean = frame.group_by("region", "age_band").agg(
        pl.col("amount").clip(0, 100).mean().alias("m_true"))
    return rate.join(mean, on=["region", "age_band"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cells")
    frame = cells_frame()
    frame.write_parquet(tmp / "cells.parquet")
    return tmp, truth(frame)


def plan_on(data, measure: str, engine: str):
    tmp, _truth = data
    settings = make_settings(tmp, tmp / "cells.parquet", measure=measure, engine=engine,
                             max_rows=1_000_000, bounds__rows_per_customer=ROWS_PER_CUSTOMER)
    table = catalog.open_table(settings.datasets["purchases"], tmp / "prepared", settings.engine)
    request = parse_body({"sql": SQL, **SPEND[measure]})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def answers(plan, n: int, truths: pl.DataFrame) -> pl.DataFrame:
    rows = [r for _ in range(n) for r in execute.answer_rows(plan, execute.release(plan))]
    return pl.DataFrame(rows).join(truths, on=["region", "age_band"])


def coverage(out: pl.DataFrame, alias: str, shrink: float = 1.0) -> float:
    """Share of intervals holding the truth (shrink < 1: intervals narrowed around the value)."""
    value, true = out[alias].to_numpy(), out[f"{alias}_true"].to_numpy()
    low = value - shrink * (value - out[f"{alias}_ci_low"].to_numpy())
    high = value + shrink * (out[f"{alias}_ci_high"].to_numpy() - value)
    return float(np.mean((low <= true) & (true <= high)))


@pytest.mark.parametrize("measure", ["pure", "zcdp"])
def test_ratio_intervals_cover_as_promised(data, measure):
    """100 releases x 72 cells per aggregate: the standard error of a coverage is ~0.0026."""
    out = answers(plan_on(data, measure, "duckdb"), 100, data[1])
    for alias in ("r", "m"):
        assert 0.94 <= coverage(out, alias) <= 0.97, (alias, coverage(out, alias))
        assert coverage(out, alias, shrink=0.8) < 0.94, "the check cannot tell a too-narrow interval"


@pytest.mark.parametrize("measure", ["pure", "zcdp"])
def test_reference_engine_intervals_cover(data, measure):
    """OpenDP's polars is slower: fewer releases."""
    out = answers(plan_on(data, measure, "polars"), 20, data[1])
    for alias in ("r", "m"):
        covered = round(coverage(out, alias) * out.height)
        assert st.binomtest(covered, out.height, 0.95).pvalue > 1e-4, (alias, covered, out.height)
