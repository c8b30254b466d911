"""Answers derived from a partner's own released answers: free, marked, recorded, honest."""
from __future__ import annotations

import pytest

from budget.amounts import Amount
from dpquery import derive, derive_values
from dpquery.engine import intervals
from dpquery.errors import InvalidRequest

FINE = "SELECT region, age_band, COUNT(*) AS n FROM purchases GROUP BY region, age_band"
COARSE = "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region"
FILTERED = ("SELECT region, COUNT(*) AS n FROM purchases WHERE age_band = '25-34' "
            "GROUP BY region")


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


# -- more derivations (issue 15 item 4): each equals the post-processing of the held
#    answer, is recorded at zero cost, leaves the remaining budget alone, and gives way
#    to a fresh answer when it would be less accurate than asked

RATE_FINE = ("SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS r FROM purchases "
             "GROUP BY region, age_band")
RATE_FILTERED = ("SELECT region, PURCHASE_RATE(category = 'snacks') AS r FROM purchases "
                 "WHERE age_band = '25-34' GROUP BY region")


def free(svc, pid, body):
    """Run `body`; check it was derived at no cost and recorded as a zero-cost entry."""
    spent = svc.ledger.spent(pid, "purchases")
    out = svc.run(pid, body)
    assert out.get("derived_from"), "expected a derived answer"
    assert svc.ledger.spent(pid, "purchases") == spent and out["charged"]["epsilon"] == "0"
    reservation = svc.ledger.reservations(pid)[-1]
    assert reservation.amount == Amount() and reservation.status == "COMMITTED"
    assert reservation.id == out["query_id"]
    return out


def charged(svc, pid, body):
    spent = svc.ledger.spent(pid, "purchases")
    out = svc.run(pid, body)
    assert "derived_from" not in out and svc.ledger.spent(pid, "purchases") > spent
    return out


def held_width(answer, alias):
    return next(a for a in answer["aggregates"] if a["alias"] == alias)["expected_halfwidth"]


def test_an_accuracy_target_met_by_summed_cells_is_derived_else_answered_fresh(svc):
    a, b = partner(svc), partner(svc, "B")
    svc.run(a, {"sql": FINE, "epsilon": 1})
    svc.run(b, {"sql": FINE, "epsilon": 1})
    loose = free(svc, a, {"sql": COARSE, "accuracy": {"within": 1e7}})
    width = held_width(loose, "n")
    row = max(loose["rows"], key=lambda r: r["n"])  # far from 0: its interval is not clipped
    assert (row["n_ci_high"] - row["n_ci_low"]) / 2 == pytest.approx(width)
    assert "derived_from" in svc.run(b, {"sql": COARSE, "accuracy": {"within": width * 1.001}})
    tight = charged(svc, b, {"sql": COARSE.replace(" n ", " m "),
                             "accuracy": {"within": width * 0.9}})
    assert held_width(tight, "m") <= width * 0.9


def test_a_filtered_ratio_copies_cells_when_they_meet_the_target(svc):
    a = partner(svc)
    fine = svc.run(a, {"sql": RATE_FINE, "epsilon": 1})
    promised = held_width(svc.preview({"sql": RATE_FILTERED, "epsilon": 1}), "r")
    out = free(svc, a, {"sql": RATE_FILTERED, "accuracy": {"within": promised * 1.01}})
    assert promised * 0.99 <= held_width(out, "r") <= promised * 1.01  # the held laws' width
    cells = {r["region"]: (r["r"], r["r_ci_low"], r["r_ci_high"])
             for r in fine["rows"] if r["age_band"] == "25-34"}
    assert {r["region"]: (r["r"], r["r_ci_low"], r["r_ci_high"]) for r in out["rows"]} == cells
    tighter = RATE_FILTERED.replace(" r ", " s ")
    charged(svc, a, {"sql": tighter, "accuracy": {"within": promised * 0.8}})


def test_order_by_limit_and_having_on_a_held_table_are_derived(svc):
    pid = partner(svc)
    fine = svc.run(pid, {"sql": FINE, "epsilon": 1})
    top = free(svc, pid, {"sql": FINE + " ORDER BY n DESC LIMIT 3", "epsilon": 1})
    assert top["rows"] == sorted(fine["rows"], key=lambda r: r["n"], reverse=True)[:3]
    cut = sorted(r["n"] for r in fine["rows"])[len(fine["rows"]) // 2]
    big = free(svc, pid, {"sql": FINE + f" HAVING n > {cut}", "epsilon": 1})
    assert big["rows"] == [r for r in fine["rows"] if r["n"] > cut]
    assert "derived_from" not in svc.run(pid, {"sql": FINE + " ORDER BY n", "epsilon": 2})


def _released_sum(answer, alias, rows):
    width = held_width(answer, alias)
    values = [derive_values.released(r, alias, width, True) for r in rows]
    return sum(-width if v is None else v for v in values)  # whole interval clipped: −width


def test_coarser_by_several_columns_and_in_total_adds_released_cells(svc):
    pid = partner(svc)
    fine = svc.run(pid, {"sql": "SELECT region, age_band, year, COUNT(*) AS n FROM purchases "
                                "GROUP BY region, age_band, year", "epsilon": 2})
    total = free(svc, pid, {"sql": "SELECT COUNT(*) AS n FROM purchases", "epsilon": 0.01})
    assert total["rows"][0]["n"] == pytest.approx(_released_sum(fine, "n", fine["rows"]))
    law = intervals.Noise(False, fine["aggregates"][0]["noise"][0]["scale"] * (1 + 1e-5), 1.0)
    assert held_width(total, "n") == pytest.approx(intervals.sum_halfwidth(law, 720, 0.95))
    bands = free(svc, pid, {"sql": "SELECT age_band, COUNT(*) AS n FROM purchases "
                                   "GROUP BY age_band", "epsilon": 0.05})
    for row in bands["rows"]:
        cells = [r for r in fine["rows"] if r["age_band"] == row["age_band"]]
        assert row["n"] == pytest.approx(_released_sum(fine, "n", cells))
    assert "derived_from" not in svc.run(pid, {"sql": "SELECT COUNT(*) AS n FROM purchases",
                                               "epsilon": 1, "confidence": 0.9})


AVG = "SELECT region, AVG(amount) AS a FROM purchases GROUP BY region"


def test_avg_from_a_held_sum_and_count_is_their_ratio_with_a_ratio_interval(svc):
    pid = partner(svc)
    sums = svc.run(pid, {"sql": "SELECT region, SUM(amount) AS s FROM purchases GROUP BY region",
                         "epsilon": 0.2})
    counts = svc.run(pid, {"sql": "SELECT region, COUNT(*) AS c FROM purchases GROUP BY region",
                           "epsilon": 0.2})
    out = free(svc, pid, {"sql": AVG, "epsilon": 0.1})
    fresh = held_width(svc.preview({"sql": AVG, "epsilon": 0.1}), "a")  # None: no useful bound
    assert 0 < held_width(out, "a") < (fresh or float("inf"))
    assert out["derived_from"] == [sums["query_id"], counts["query_id"]]
    entries = {a["alias"]: a["noise"][0] for a in (*sums["aggregates"], *counts["aggregates"])}
    num = intervals.Noise(False, entries["s"]["scale"] * (1 + 1e-5), 0.01)
    den = intervals.Noise(False, entries["c"]["scale"] * (1 + 1e-5), 1.0)
    by_region = {r["region"]: r for r in counts["rows"]}
    for row, s in zip(out["rows"], sums["rows"]):
        c = by_region[s["region"]]
        n = derive_values.released(s, "s", held_width(sums, "s"), True)
        d = derive_values.released(c, "c", held_width(counts, "c"), True)
        if n is None or d is None:  # a whole interval clipped: no value, the clamp range
            assert (row["a"], row["a_ci_low"], row["a_ci_high"]) == (None, 0.0, 100.0)
            continue
        (value, low, high), = intervals.ratio_intervals([n], [d], num, den, (0.0, 100.0), 0.95)
        assert (row["a"], row["a_ci_low"], row["a_ci_high"]) == (value, low, high)
        if d > 0:  # else no value, and the whole clamp range
            assert value == pytest.approx(min(max(n / d, 0.0), 100.0)) and low <= value <= high
        else:
            assert value is None
    assert sum(r["a"] is not None for r in out["rows"]) >= 3
    charged(svc, pid, {"sql": AVG.replace(" a ", " b "), "epsilon": 2})  # fresh is tighter


CUSTOMERS_FILTERED = ("SELECT region, COUNT(DISTINCT customer_id) AS c FROM purchases "
                      "WHERE age_band = '25-34' GROUP BY region")


def test_customers_from_a_held_purchase_rates_denominators(svc):
    pid = partner(svc)
    rate = svc.run(pid, {"sql": RATE_FINE, "epsilon": 1})
    assert "released_parts" not in svc.run(pid, {"sql": COARSE, "epsilon": 0.1})
    parts = {(p["region"], p["age_band"]): p["r.den"] for p in rate["released_parts"]}
    out = free(svc, pid, {"sql": CUSTOMERS_FILTERED, "epsilon": 0.1})
    entry = next(e for e in rate["aggregates"][0]["noise"] if e["statistic"] == "den")
    width = intervals.sum_halfwidth(intervals.Noise(False, entry["scale"] * (1 + 1e-5), 1.0),
                                    1, 0.95)
    for row in out["rows"]:
        den = parts[(row["region"], "25-34")]
        assert row["c"] == max(den, 0.0) and row["c_ci_high"] == pytest.approx(max(den + width, 0))
    wider = "SELECT region, COUNT(DISTINCT customer_id) AS c FROM purchases GROUP BY region"
    charged(svc, pid, {"sql": wider, "epsilon": 0.01})  # customers do not add up over cells
    charged(svc, pid, {"sql": CUSTOMERS_FILTERED.replace(" c ", " d "), "epsilon": 2})


def test_counts_from_a_held_averages_denominators_add_up(svc):
    pid = partner(svc)
    avg = svc.run(pid, {"sql": "SELECT region, age_band, AVG(amount) AS a FROM purchases "
                               "GROUP BY region, age_band", "epsilon": 1})
    out = free(svc, pid, {"sql": COARSE, "epsilon": 0.02})
    for row in out["rows"]:
        dens = [p["a.den"] for p in avg["released_parts"] if p["region"] == row["region"]]
        assert len(dens) == 6 and row["n"] == pytest.approx(max(sum(dens), 0.0))
    charged(svc, pid, {"sql": COARSE.replace(" n ", " m "), "epsilon": 2})


class Scrambled:
    """The partner's ledger with every released value in stored answers replaced."""

    def __init__(self, ledger, value: float):
        self.ledger, self.value = ledger, value

    def reservations(self, *args):
        return self.ledger.reservations(*args)

    def get_answer(self, partner_id, request_id):
        import json
        answer = json.loads(self.ledger.get_answer(partner_id, request_id))
        for row in answer["rows"] + answer.get("released_parts", []):
            for k, v in row.items():
                if isinstance(v, float) and k not in answer["group_by"]:
                    row[k] = self.value
        return json.dumps(answer)


@pytest.mark.parametrize("body, derived", [  # with the held answers below
    ({"sql": COARSE, "epsilon": 0.05}, True), ({"sql": COARSE, "epsilon": 2}, False),
    ({"sql": FILTERED, "epsilon": 0.5}, True), ({"sql": FILTERED, "epsilon": 1}, False),
    ({"sql": "SELECT COUNT(*) AS n FROM purchases", "epsilon": 0.05}, True),
    ({"sql": FINE + " ORDER BY n DESC LIMIT 2", "epsilon": 0.5}, True),
    ({"sql": AVG, "epsilon": 0.1}, True), ({"sql": AVG, "epsilon": 2}, False),
    ({"sql": CUSTOMERS_FILTERED, "epsilon": 0.1}, True),
    ({"sql": CUSTOMERS_FILTERED, "epsilon": 2}, False)])
def test_whether_a_query_is_derived_does_not_depend_on_released_values(svc, body, derived):
    from dpquery.engine import catalog, plan as planner
    from dpquery.service import describe_plan
    pid = partner(svc)
    for held in (FINE, RATE_FINE, "SELECT region, SUM(amount) AS s FROM purchases GROUP BY region",
                 "SELECT region, COUNT(*) AS c FROM purchases GROUP BY region"):
        svc.run(pid, {"sql": held, "epsilon": 0.5})
    request = svc.parse(body)
    table = catalog.check_query(request.query, svc.tables)
    plan = planner.build(request, table)
    found = [derive.find(ledger, pid, request, table, plan, describe_plan) is not None
             for ledger in (svc.ledger, Scrambled(svc.ledger, 0.0), Scrambled(svc.ledger, -1e9),
                            Scrambled(svc.ledger, 1e9))]
    assert found == [derived] * 4
