"""VARIANCE and STDDEV on the engines: the squares cell (`sq`).

Every engine computes the reference's exact Σ(clamp(x) − c), Σ(clamp(x) − c)²
and count; OpenDP's vector map at the cell's sensitivity equals the reference
plan's map at the same scale (so the charge is what the noise delivers); one
customer moves the squares vector by at most that sensitivity; the noise on
the released squares fits its law; columns the engines cannot sum exactly stay
on OpenDP's polars path with a note.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
from scipy import stats as st

from dpquery.engine import bounded, catalog, engines, execute, mechanisms, noise, vector_plan
from dpquery.engine.prepare import ROW_RANK
from settings_helpers import make_settings
from test_engines import combos, exact, plan_of, sql_of, table  # noqa: F401 (fixture)
from test_statistical import P_FLOOR, plan_for, tiny_tables

SPREAD = "VARIANCE(amount) AS a, STDDEV_POP(amount) AS b"
GROUPS = ["", "region", "age_band, category", "region, age_band, year"]


def test_variance_cells_are_identical_on_duckdb_for_every_shape(table):
    for where, group in combos("duckdb"):
        plan = plan_of(table, sql_of(SPREAD, where, group))
        assert [p.cells[1].kind for p in plan.bounded] == ["sq"]
        part = plan.bounded[0]
        assert exact("polars", table, part).equals(exact("duckdb", table, part)), (where, group)


def test_variance_cells_are_identical_on_spark(table):
    plan = plan_of(table, sql_of("STDDEV_SAMP(amount) AS a", "WHERE category = 'snacks'",
                                 "region, age_band"))
    part = plan.bounded[0]
    assert exact("polars", table, part).equals(exact("spark", table, part))


def test_the_squares_cell_is_the_bounded_sum_of_squares(table):
    plan = plan_of(table, "SELECT VAR_POP(amount) AS v FROM purchases")
    out = exact("duckdb", table, plan.bounded[0]).row(0, named=True)
    kept = table.frame.filter(pl.col(ROW_RANK) < table.dataset.rows_per_customer)
    x = kept.select((pl.col("amount__units").clip(0, 10000) - 5000)).collect().to_series()
    assert out["v.sq"] == int((x * x).sum()) and out["v.num"] == int(x.sum())
    assert out["v.den"] == len(x)


@pytest.mark.parametrize("measure", ["pure", "zcdp"])
def test_charge_equals_what_the_engine_noise_delivers(tmp_path, demo_data, measure):
    """OpenDP's vector map at k·M² equals the reference plan's map of the clamped square sum
    at the same scale, and the statistics' losses add up to the charge."""
    settings = make_settings(tmp_path, demo_data, engine="duckdb", measure=measure)
    table = catalog.open_table(settings.datasets["purchases"], tmp_path / "prep", settings.engine)
    for group in GROUPS:
        plan = plan_of(table, sql_of(SPREAD, "", group))
        name, delivered = plan.measure, 0.0
        for part, (_shape, sps) in zip(plan.bounded, plan.parts):
            for sp in sps:
                ours = noise.loss(sp.param, name, vector_plan.stat_sensitivity(part, sp, name))
                assert ours == pytest.approx(plan.context.single_loss(sp.stat, sp.param), rel=1e-6)
                assert ours <= sp.share
                delivered += ours
        assert delivered == pytest.approx(plan.cost, rel=1e-6) and delivered <= plan.cost


def test_one_customer_moves_the_squares_by_at_most_the_sensitivity(table):
    """Neighbouring datasets: without one customer (the heaviest, and a light one), every
    cell vector changes by at most its L1 sensitivity (and that bound is reached only by
    a customer with k extreme rows)."""
    plan = plan_of(table, sql_of(SPREAD, "", "region"))
    part = plan.bounded[0]
    full = exact("polars", table, part)
    per = table.frame.group_by("customer_id").len().sort("len").collect()["customer_id"]
    for cid in (per[-1], per[0], per[len(per) // 2]):
        without = dataclasses.replace(table, frame=table.frame.filter(pl.col("customer_id") != cid))
        other = exact("polars", without, part)  # a customer's absence leaves others' rows as
        # they were: the bounding key ranks each customer's rows by its own rows only
        joined = full.join(other, on="region", how="left", suffix="_n").fill_null(0)
        for cell in part.cells:
            moved = (joined[cell.name] - joined[f"{cell.name}_n"]).abs().sum()
            assert moved <= bounded.sensitivity(part, cell, "l1")
            assert moved > 0 or cell.kind != "len"  # the customer was in the table


def test_the_square_sensitivity_is_rows_times_the_largest_square(table):
    plan = plan_of(table, "SELECT VARIANCE(amount) AS v FROM purchases")
    part = plan.bounded[0]
    sq = next(c for c in part.cells if c.kind == "sq")
    assert (sq.bounds, sq.center) == ((0, 10000), 5000)
    k = table.dataset.rows_per_customer
    assert bounded.sensitivity(part, sq, "l1") == bounded.sensitivity(part, sq, "l2") == k * 5000 ** 2


def test_squares_that_could_overflow_stay_on_the_reference_with_a_note(table):
    assert mechanisms.square_fits((0, 2), 2 ** 62) and not mechanisms.square_fits((0, 2), 2 ** 62 + 1)
    # max_rows · M² = 1e8 · (250,000 cents)² lies between 2^62 and OpenDP's own limit 2^63
    col = dataclasses.replace(table.dataset.columns["amount"], upper=5000.0)
    wide = dataclasses.replace(table.dataset, columns={**table.dataset.columns, "amount": col})
    plan = plan_of(dataclasses.replace(table, dataset=wide), sql_of(SPREAD, "", "region"))
    assert plan.bounded == [None]
    assert any("could overflow a 64-bit sum" in n and "not the duckdb engine" in n for n in plan.notes)


def test_a_float_column_without_resolution_stays_on_the_reference(table):
    col = dataclasses.replace(table.dataset.columns["amount"], resolution=None)
    ds = dataclasses.replace(table.dataset, columns={**table.dataset.columns, "amount": col})
    plan = plan_of(dataclasses.replace(table, dataset=ds), sql_of(SPREAD, "", "region"))
    assert plan.bounded == [None]
    assert any("a runs on the OpenDP polars path" in n and "have no `resolution`" in n
               and "for amount in config.toml" in n for n in plan.notes)
    rows = execute.answer_rows(plan, execute.release(plan))
    assert len(rows) == 12 and all(r["a_ci_low"] <= r["a_ci_high"] for r in rows)


def test_on_the_engine_no_note_says_the_reference(table):
    plan = plan_of(table, sql_of(SPREAD, "", "region"))
    assert not any("polars path" in n for n in plan.notes)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """measure -> the tiny dataset (test_statistical.py) on DuckDB."""
    return tiny_tables(tmp_path_factory.mktemp("tiny-spread"), "duckdb", "prep")


@pytest.mark.slow
@pytest.mark.parametrize("measure", ["pure", "zcdp"])
def test_squares_noise_fits_its_law_on_the_engine(tiny, measure, monkeypatch):
    """400 releases through execute.release (DuckDB computes the exact vector once): the noise
    on Σ(x − c)² in cents² fits a Laplace (Gaussian) at the plan's scale and not at twice it
    (Kolmogorov-Smirnov; at scales near 1e10 cents² the discrete laws equal the continuous
    ones to far below one bin)."""
    table = tiny[measure]
    real, cache = engines.aggregate, {}
    monkeypatch.setattr(engines, "aggregate", lambda e, t, p: cache.setdefault(p, real(e, t, p)))
    plan = plan_for(table, "SELECT region, VARIANCE(amount) AS v FROM purchases GROUP BY region", 1.0)
    part = plan.bounded[0]
    truth = real("polars", table, part).filter(pl.col("region") == "Wayne")["v.sq"].item()
    out = pl.concat([execute.release(plan) for _ in range(400)]).filter(pl.col("region") == "Wayne")
    sp = next(sp for sp in plan.stats if sp.stat.column == "v.sq")
    law = st.laplace if measure == "pure" else st.norm
    assert sp.distribution == ("Integer Laplace" if measure == "pure" else "Integer Gaussian")
    residual = out["v.sq"].to_numpy().astype(np.float64) - truth
    assert st.kstest(residual, law(scale=sp.param).cdf).pvalue > P_FLOOR
    assert st.kstest(residual, law(scale=2 * sp.param).cdf).pvalue < P_FLOOR


def test_a_squares_cell_belongs_to_a_rows_part_only():
    """`sensitivity` counts a customers part's cells per group (1 or T): no square there."""
    sq = bounded.Cell("v.sq", "sq", "amount__units", (0, 10000), 5000)
    bounded.Part("rows", "customer_id", (), None, (sq,), 200, None)
    with pytest.raises(ValueError, match="customers part computes len, flag, sign, total"):
        bounded.Part("customers", "customer_id", (), None, (sq,), 200, None)


def test_row_level_expressions_with_units_run_on_the_engine_and_others_say_why(table):
    """A whole-number or one-column selection keeps integer units (derived columns); a
    fractional expression stays on the reference, and its note names no config key."""
    for expr in ("CASE WHEN category = 'snacks' THEN amount ELSE 0 END", "year - 2016"):
        plan = plan_of(table, f"SELECT region, VAR_SAMP({expr}) AS a FROM purchases GROUP BY region")
        part = plan.bounded[0]
        assert exact("polars", plan.table, part).equals(exact("duckdb", plan.table, part)), expr
    plan = plan_of(table, "SELECT region, STDDEV(amount * 2) AS a FROM purchases GROUP BY region")
    assert plan.bounded == [None]
    note = next(n for n in plan.notes if "polars path" in n)
    assert "row-level expression" in note and "config.toml" not in note
