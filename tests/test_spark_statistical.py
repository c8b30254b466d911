"""On the Spark engine, noise fits its declared distribution (COUNT, COUNT DISTINCT, SUM,
AVG, PURCHASE_RATE), over tables prepared by the Spark job.

Each test runs Spark once per plan part (its exact aggregates, checked against
the truth computed by polars from the same prepared parts), then draws 400
releases through the real release path (execute.release: completion of every
key, OpenDP's vector noise at the plan's scale, joins) reusing that exact
vector: a local Spark job takes seconds, the noise microseconds. Statistical
tests with a p-value floor, each paired with a wrong scale it must reject
(test_statistical.py's helpers).
"""
from __future__ import annotations

import polars as pl
import pytest
from scipy import stats as st

from dpquery.engine import engines, execute
from test_statistical import N, P_FLOOR, check_discrete, plan_for, stat_scale, tiny_tables

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """measure -> the tiny dataset (no heavy customer) prepared and queried by Spark."""
    return tiny_tables(tmp_path_factory.mktemp("spark-tiny"), "spark")


@pytest.fixture
def spark_runs(monkeypatch):
    """Spark computes each part once; later releases of the same plan reuse its vector."""
    real, cache, runs = engines.aggregate, {}, []

    def once(engine, table, part):
        assert engine == "spark"
        if part not in cache:
            runs.append(part)
            cache[part] = real(engine, table, part)
        return cache[part]

    monkeypatch.setattr(engines, "aggregate", once)
    return runs


def releases(plan, n: int = N) -> pl.DataFrame:
    return pl.concat([execute.release(plan) for _ in range(n)])


def _region(table, region: str) -> pl.LazyFrame:
    return table.frame.filter(pl.col("region") == region)


@pytest.mark.parametrize("measure", ["pure", "zcdp"])
def test_count_noise_fits_its_distribution(tables, spark_runs, measure):
    table = tables[measure]
    plan = plan_for(table, "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region", 0.5)
    out = releases(plan).filter(pl.col("region") == "Wayne")
    truth = _region(table, "Wayne").select(pl.len()).collect().item()
    exact = engines.aggregate("spark", table, plan.bounded[0])
    assert exact.filter(pl.col("region") == "Wayne")["n"].item() == truth
    assert len(spark_runs) == 1
    check_discrete(out["n"].to_numpy() - truth, *stat_scale(plan, "n"))


def test_customer_count_and_rate_parts_fit(tables, spark_runs):
    table = tables["pure"]
    sql = ("SELECT region, COUNT(DISTINCT customer_id) AS c, PURCHASE_RATE(category = 'snacks') "
           "AS r FROM purchases GROUP BY region")
    plan = plan_for(table, sql, 1.0)
    out = releases(plan).filter(pl.col("region") == "Oakland")
    frame = _region(table, "Oakland")
    customers = frame.select(pl.col("customer_id").n_unique()).collect().item()
    snackers = frame.filter(pl.col("category") == "snacks").select(
        pl.col("customer_id").n_unique()).collect().item()
    assert all(part is not None for part in plan.bounded) and len(spark_runs) == len(plan.bounded)
    check_discrete(out["c"].to_numpy() - customers, *stat_scale(plan, "c"))
    check_discrete(out["r.den"].to_numpy() - customers, *stat_scale(plan, "r.den"))
    distribution, scale = stat_scale(plan, "r.num")  # centred: ±1 per customer, unit 1/2
    check_discrete(out["r.num"].to_numpy() - (2 * snackers - customers), distribution, scale / 0.5)


def test_sum_noise_fits_a_discrete_laplace_in_cents(tables, spark_runs):
    table = tables["pure"]
    plan = plan_for(table, "SELECT SUM(amount) AS s FROM purchases", 1.0)
    truth = table.frame.select(pl.col("amount__units").clip(0, 10000).sum()).collect().item()
    noise = releases(plan)["s"].to_numpy() - truth  # raw releases are in cents
    distribution, scale = stat_scale(plan, "s")
    assert distribution == "Integer Laplace" and len(spark_runs) == 1
    check_discrete(noise.astype(int), distribution, scale / 0.01)


def test_avg_intervals_cover_the_bounded_mean(tables, spark_runs):
    """95% intervals of AVG contain the (contribution-bounded) truth at least ~95% of the time."""
    table = tables["pure"]
    plan = plan_for(table, "SELECT AVG(amount) AS m FROM purchases", 1.0)
    truth = table.frame.select(pl.col("amount").clip(0, 100).mean()).collect().item()
    rows = [execute.answer_rows(plan, execute.release(plan))[0] for _ in range(N)]
    covered = sum(r["m_ci_low"] <= truth <= r["m_ci_high"] for r in rows)
    assert len(spark_runs) == len(plan.bounded) >= 1
    assert st.binomtest(covered, N, 0.95, alternative="less").pvalue > P_FLOOR
