"""Noise fits its declared distribution; neighbouring datasets stay ε-close.

Statistical tests with a p-value floor, never a fixed seed's output. Each GOF
test is paired with a check that the same test rejects a wrong scale, so the
test can fail.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as st

from settings_helpers import make_settings
from dpquery.engine import catalog, execute, plan as planner
from dpquery.engine.request import parse_body

pytestmark = pytest.mark.slow
P_FLOOR = 1e-4
N = 400


def tiny_frame(heavy: bool = True) -> pl.DataFrame:
    """40 light customers and, optionally, one heavy customer with 400 rows."""
    rng = np.random.default_rng(3)
    rows = []
    for cid in range(1, 41):
        region = ["Wayne", "Oakland"][cid % 2]
        for j in range(int(rng.integers(3, 10))):
            rows.append((cid, region, "25-34", True, dt.date(2024, 1 + j % 12, 1),
                         ["snacks", "produce", "dairy"][(cid + j) % 3], float(1 + (cid * j) % 50)))
    if heavy:  # 400 rows in Wayne, and in three more counties than its region bound of 2
        rows += [(99, "Wayne", "35-44", True, dt.date(2024, 3, 1), "snacks", 30.0)] * 400
        rows += [(99, county, "35-44", True, dt.date(2024, 4, 1), "dairy", 4.0)
                 for county in ("Calhoun", "Jackson", "Oakland") for _ in range(5)]
    rows.append((100, "Wayne", "25-34", False, dt.date(2024, 3, 1), "snacks", 5.0))  # not opted in
    rows.append((101, "Wayne", "25-34", True, dt.date(2024, 3, 1), "pharmacy", 5.0))  # excluded
    cols = ["customer_id", "region", "age_band", "opted_in", "purchased_on", "category", "amount"]
    return pl.DataFrame(rows, schema=cols, orient="row")


ENGINES = ["polars", "duckdb"]


@pytest.fixture(scope="module")
def all_tables(tmp_path_factory):
    """(measure, heavy, engine) -> table; one bounding key, so every engine bounds alike."""
    tmp = tmp_path_factory.mktemp("tiny")
    prepared = tmp / "prepared"
    out = {}
    for measure in ("pure", "zcdp"):
        for heavy in (True, False):
            path = tmp / f"{measure}-{heavy}.parquet"
            tiny_frame(heavy).write_parquet(path)
            for engine in ENGINES:
                settings = make_settings(tmp, path, measure=measure, max_rows=10_000, engine=engine)
                out[measure, heavy, engine] = catalog.open_table(settings.datasets["purchases"],
                                                                 prepared, settings.engine)
    return out


def tiny_tables(tmp, engine: str, prepared: str = "prepared") -> dict:
    """measure -> the tiny dataset without its heavy customer, opened on `engine`."""
    path = tmp / "tiny.parquet"
    tiny_frame(heavy=False).write_parquet(path)
    out = {}
    for measure in ("pure", "zcdp"):
        settings = make_settings(tmp, path, measure=measure, max_rows=10_000, engine=engine)
        out[measure] = catalog.open_table(settings.datasets["purchases"], tmp / prepared,
                                          settings.engine)
    return out


@pytest.fixture(params=ENGINES)
def tables(request, all_tables):
    """The tables of one engine, keyed (measure, heavy): every test runs on every engine."""
    return {(m, h): t for (m, h, e), t in all_tables.items() if e == request.param}


def plan_for(table, sql: str, spend: float):
    key = "rho" if table.dataset.measure == "zcdp" else "epsilon"
    request = parse_body({"sql": sql, key: spend})
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def releases(plan, n: int = N) -> pl.DataFrame:
    return pl.concat([execute.release(plan) for _ in range(n)])


def exact(table, sql_frame) -> pl.DataFrame:
    return sql_frame(table.frame).collect()


def discrete_pmf(kind: str, scale: float, ks: np.ndarray) -> np.ndarray:
    if kind == "laplace":
        weights = np.exp(-np.abs(ks) / scale)
    else:
        weights = np.exp(-(ks.astype(float) ** 2) / (2 * scale ** 2))
    return weights / weights.sum()


def chi_square_p(noise: np.ndarray, kind: str, scale: float) -> float:
    """Chi-square goodness of fit of integer noise to a discrete Laplace/Gaussian."""
    support = np.arange(-int(40 * scale) - 50, int(40 * scale) + 51)
    pmf = discrete_pmf(kind, scale, support)
    cdf = np.cumsum(pmf)  # ten bins of about equal probability
    cuts = [support[np.searchsorted(cdf, q)] for q in np.linspace(0, 1, 11)[1:-1]]
    cuts = sorted(set(cuts))
    bins = np.digitize(support, cuts, right=True)
    expected = np.bincount(bins, weights=pmf) * len(noise)
    observed = np.bincount(np.digitize(noise, cuts, right=True), minlength=len(expected))
    return st.chisquare(observed, expected).pvalue


def ks_laplace_p(noise: np.ndarray, scale: float) -> float:
    return st.kstest(noise, st.laplace(scale=scale).cdf).pvalue


def stat_scale(plan, column: str) -> tuple[str, float]:
    sp = next(sp for sp in plan.stats if sp.stat.column == column)
    return sp.distribution, sp.scale


def check_discrete(noise: np.ndarray, distribution: str, scale: float) -> None:
    kind = "laplace" if "Laplace" in distribution else "gaussian"
    assert chi_square_p(noise, kind, scale) > P_FLOOR
    assert chi_square_p(noise, kind, scale * 2) < P_FLOOR, "test cannot tell a wrong scale"


COUNT_SQL = "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region"


def _truth_counts(table):
    return {r["region"]: r["len"] for r in
            table.frame.group_by("region").len().collect().iter_rows(named=True)}


@pytest.mark.parametrize("measure", ["pure", "zcdp"])
def test_count_noise_fits_its_distribution(tables, measure):
    table = tables[measure, False]
    plan = plan_for(table, COUNT_SQL, 0.5)
    out = releases(plan).filter(pl.col("region") == "Wayne")
    truth = _truth_counts(table)["Wayne"]
    check_discrete(out["n"].to_numpy() - truth, *stat_scale(plan, "n"))


def test_customer_count_and_rate_parts_fit(tables):
    table = tables["pure", False]
    sql = ("SELECT region, COUNT(DISTINCT customer_id) AS c, PURCHASE_RATE(category = 'snacks') AS r "
           "FROM purchases GROUP BY region")
    plan = plan_for(table, sql, 1.0)
    out = releases(plan).filter(pl.col("region") == "Oakland")
    frame = table.frame.filter(pl.col("region") == "Oakland")
    customers = frame.select(pl.col("customer_id").n_unique()).collect().item()
    snackers = frame.filter(pl.col("category") == "snacks").select(
        pl.col("customer_id").n_unique()).collect().item()
    check_discrete(out["c"].to_numpy() - customers, *stat_scale(plan, "c"))
    check_discrete(out["r.den"].to_numpy() - customers, *stat_scale(plan, "r.den"))
    distribution, scale = stat_scale(plan, "r.num")  # centred: ±1 per customer, unit 1/2
    check_discrete(out["r.num"].to_numpy() - (2 * snackers - customers), distribution, scale / 0.5)


def test_sum_noise_fits_a_discrete_laplace_in_cents(tables):
    """amount has resolution 0.01: the sum is exact in cents, with integer noise."""
    table = tables["pure", False]
    plan = plan_for(table, "SELECT SUM(amount) AS s FROM purchases", 1.0)
    truth = table.frame.select(pl.col("amount__units").clip(0, 10000).sum()).collect().item()
    noise = releases(plan)["s"].to_numpy() - truth  # raw releases are in cents
    distribution, scale = stat_scale(plan, "s")
    assert distribution == "Integer Laplace"
    check_discrete(noise.astype(int), distribution, scale / 0.01)


def test_float_sum_noise_fits_a_laplace(tables, tmp_path):
    """Without a resolution the sum is a float sum with continuous Laplace noise."""
    table = tables["pure", False]
    col = table.dataset.columns["amount"]
    import dataclasses
    plain = dataclasses.replace(col, resolution=None)
    ds = dataclasses.replace(table.dataset, columns={**table.dataset.columns, "amount": plain})
    table = catalog.Table(ds, table.frame, table.schema, table.version)
    plan = plan_for(table, "SELECT SUM(amount) AS s FROM purchases", 1.0)
    truth = table.frame.select(pl.col("amount").clip(0, 100).sum()).collect().item()
    noise = releases(plan)["s"].to_numpy() - truth
    distribution, scale = stat_scale(plan, "s")
    assert distribution == "Float Laplace"
    assert ks_laplace_p(noise, scale) > P_FLOOR
    assert ks_laplace_p(noise, scale * 2) < P_FLOOR


def test_avg_intervals_cover_the_bounded_mean(tables):
    """95% intervals of AVG contain the (contribution-bounded) truth at least ~95% of the time."""
    table = tables["pure", False]
    plan = plan_for(table, "SELECT AVG(amount) AS m FROM purchases", 1.0)
    truth = table.frame.select(pl.col("amount").clip(0, 100).mean()).collect().item()
    rows = [execute.answer_rows(plan, execute.release(plan))[0] for _ in range(200)]
    covered = sum(r["m_ci_low"] <= truth <= r["m_ci_high"] for r in rows)
    assert st.binomtest(covered, 200, 0.95, alternative="less").pvalue > P_FLOOR


def test_quantile_returns_candidates_concentrated_near_the_truth(settings):
    table = catalog.open_table(settings.datasets["purchases"])
    plan = plan_for(table, "SELECT MEDIAN(amount) AS med FROM purchases", 1.0)
    values = releases(plan, 100)["med"].to_numpy()
    cands = np.array(table.dataset.columns["amount"].quantile_candidates, dtype=float)
    assert set(values) <= set(cands)
    truth = table.frame.select(pl.col("amount").median()).collect().item()
    nearest = cands[np.argsort(np.abs(cands - truth))[:2]]
    assert np.isin(values, nearest).mean() > 0.8


def neighbour_epsilon_lower_bound(release, d, d_prime, threshold, n=1000) -> float:
    """A 99.9% lower confidence bound on the privacy loss of event {output >= threshold}."""
    hits = sum(release(d) >= threshold for _ in range(n))
    hits_prime = sum(release(d_prime) >= threshold for _ in range(n))
    low = st.beta.ppf(0.0005, hits, n - hits + 1) if hits else 0.0
    high = st.beta.ppf(0.9995, hits_prime + 1, n - hits_prime)
    return math.log(low / high) if low > 0 else 0.0


def release_on(plan, region: str | None = None):
    """One released value of the plan run on another table (a neighbouring dataset)."""
    def release(table):
        out = execute.release(dataclasses.replace(plan, table=table))
        return out.filter(pl.col("region") == region).item(0, 1) if region else out.item(0, 0)
    return release


def under_noised(plan, factor: float = 10):
    """The same plan with a tenth of the noise (its share raised to match, so it runs)."""
    shape, (sp,) = plan.parts[0]
    weak = planner.StatPlan(sp.stat, sp.share * factor, sp.param / factor)
    keys = plan.keys.lazy() if plan.keys is not None else None
    ctx = planner._Context(plan.table, plan.request, keys)
    return dataclasses.replace(plan, parts=[(shape, [weak])],
                               measurements=[ctx.measurement(shape, [weak])])


def test_removing_a_heavy_customer_stays_within_epsilon(tables):
    """Passes for the real mechanism; fails for a deliberately under-noised one."""
    with_heavy, without = tables["pure", True], tables["pure", False]
    eps = 1.0
    plan = plan_for(with_heavy, "SELECT COUNT(*) AS n FROM purchases", eps)
    # the heavy customer's 400 rows are truncated to rows_per_customer
    truth = without.frame.select(pl.len()).collect().item() + with_heavy.dataset.rows_per_customer
    bound = neighbour_epsilon_lower_bound(release_on(plan), with_heavy, without, truth)
    assert bound <= eps, f"empirical privacy loss {bound:.2f} exceeds epsilon {eps}"
    weak_bound = neighbour_epsilon_lower_bound(release_on(under_noised(plan)), with_heavy,
                                               without, truth)
    assert weak_bound > eps, "the check failed to catch an under-noised mechanism"


def test_a_customer_in_more_groups_than_allowed_stays_within_epsilon(tables):
    """Customer 99 shops in four counties; region allows two (Calhoun, Jackson: key order)."""
    with_heavy, without = tables["pure", True], tables["pure", False]
    eps = 1.0
    sql = "SELECT region, COUNT(DISTINCT customer_id) AS c FROM purchases GROUP BY region"
    plan = plan_for(with_heavy, sql, eps)
    truth = 1  # no other customer shops in Calhoun
    bound = neighbour_epsilon_lower_bound(release_on(plan, "Calhoun"), with_heavy, without, truth)
    assert bound <= eps, f"empirical privacy loss {bound:.2f} exceeds epsilon {eps}"
    weak_bound = neighbour_epsilon_lower_bound(release_on(under_noised(plan), "Calhoun"),
                                               with_heavy, without, truth)
    assert weak_bound > eps, "the check failed to catch an under-noised mechanism"
