"""Answers derived from a partner's own released answers: free, marked, recorded, honest."""
from __future__ import annotations

import pytest

from budget.amounts import Amount
from budget.ledger import Ledger
from dpquery import derive
from dpquery.engine import intervals
from dpquery.errors import InvalidRequest
from dpquery.service import Service

FINE = "SELECT region, age_band, COUNT(*) AS n FROM purchases GROUP BY region, age_band"
COARSE = "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region"
FILTERED = ("SELECT region, COUNT(*) AS n FROM purchases WHERE age_band = '25-34' "
            "GROUP BY region")


@pytest.fixture()
def svc(settings):
    ledger = Ledger(settings.ledger_path)
    yield Service.open(settings, ledger)
    ledger.close()


def partner(svc, name="IFA"):
    pid, _ = svc.ledger.create_partner(name, budgets={"purchases": Amount(epsilon=4)},
                                       actor="test", reason="test")
    return pid


def test_coarser_grouping_is_summed_from_released_cells_for_free(svc):
    pid = partner(svc)
    fine = svc.run(pid, {"sql": FINE, "epsilon": 2})
    spent = svc.ledger.spent(pid, "purchases")
    out = svc.run(pid, {"sql": COARSE, "epsilon": 0.5})  # six cells at ε=2 beat one at ε=0.5
    assert out["derived_from"] == [fine["query_id"]]
    assert svc.ledger.spent(pid, "purchases") == spent, "a derived answer must not charge"
    assert out["charged"]["epsilon"] == "0"
    wayne = [r for r in fine["rows"] if r["region"] == "Wayne"]
    row = next(r for r in out["rows"] if r["region"] == "Wayne")
    raw = sum(r["n"] for r in wayne)  # clipped cells only make the released sum larger
    assert row["n"] <= raw + 1e-6 and row["n_ci_low"] < row["n"] < row["n_ci_high"]
    half = (row["n_ci_high"] - row["n_ci_low"]) / 2
    assert half == pytest.approx(out["aggregates"][0]["expected_halfwidth"])
    reservation = svc.ledger.reservations(pid)[-1]
    assert reservation.amount == Amount() and reservation.status == "COMMITTED"
    assert any("derived-from" in e.actor for e in svc.ledger.ledger_entries(pid))
    again = svc.run(pid, {"sql": COARSE, "epsilon": 0.5})
    assert again["repeat"] and again["rows"] == out["rows"]


def test_filter_to_released_keys_selects_cells(svc):
    pid = partner(svc)
    fine = svc.run(pid, {"sql": FINE, "epsilon": 1})
    out = svc.run(pid, {"sql": FILTERED, "epsilon": 1})
    assert out["derived_from"] == [fine["query_id"]]
    cells = {r["region"]: r["n"] for r in fine["rows"] if r["age_band"] == "25-34"}
    assert {r["region"]: r["n"] for r in out["rows"]} == cells


def test_no_derivation_when_less_accurate_opted_out_or_from_another_partner(svc):
    pid, other = partner(svc), partner(svc, "Other")
    svc.run(pid, {"sql": FINE, "epsilon": 1})
    assert "derived_from" not in svc.run(pid, {"sql": COARSE, "epsilon": 1})  # fresh is tighter
    svc.run(other, {"sql": FINE, "epsilon": 1})
    assert "derived_from" not in svc.run(other, {"sql": FILTERED, "epsilon": 1, "derive": False})
    fresh = svc.run(partner(svc, "Third"), {"sql": COARSE, "epsilon": 1})
    assert "derived_from" not in fresh, "another partner's answers are never used"


def test_derive_flag_must_be_a_boolean():
    with pytest.raises(InvalidRequest):
        derive.option({"sql": COARSE, "epsilon": 1, "derive": "no"})


def test_sum_halfwidth_is_a_quantile_of_the_sum():
    """Exact on the lattice: 12 integer-Laplace draws of scale 4; a too-small width fails."""
    import numpy as np
    noise = intervals.Noise(False, 4.0, 1.0)
    rng = np.random.default_rng()
    p = np.exp(-1 / 4)
    draws = (rng.geometric(1 - p, (100_000, 12)) - rng.geometric(1 - p, (100_000, 12))).sum(1)
    width = intervals.sum_halfwidth(noise, 12, 0.95)
    assert 0.945 <= np.mean(np.abs(draws) <= width) <= 0.957
    assert np.mean(np.abs(draws) <= 0.9 * width) < 0.94


def test_a_rephrasing_is_derived_only_when_strictly_more_accurate(svc):
    pid = partner(svc)
    held = svc.run(pid, {"sql": COARSE, "epsilon": 1})
    renamed = COARSE.replace(" n ", " purchases ")
    assert "derived_from" not in svc.run(pid, {"sql": renamed, "epsilon": 1})
    cheaper = svc.run(pid, {"sql": COARSE.replace(" n ", " m "), "epsilon": 0.5})
    assert cheaper["derived_from"] == [held["query_id"]]


def test_preview_and_spec_know_the_derive_flag(svc):
    import jsonschema
    from dpquery.http.openapi import QUERY_BODY
    body = {"sql": "SELECT COUNT(*) AS n FROM purchases", "epsilon": 0.5, "derive": False}
    assert svc.preview(body)["cost"]
    jsonschema.validate(body, QUERY_BODY)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "derive": "no"}, QUERY_BODY)
