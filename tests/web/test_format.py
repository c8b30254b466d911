"""Formatting and chart geometry: pure functions, no app."""
from __future__ import annotations

from fractions import Fraction

from budget.amounts import Amount
from dpquery.web import charts, fmt


def test_amounts_read_as_short_decimals():
    assert fmt.amount_number("1/2") == "0.5"
    assert fmt.amount_number(Fraction(3)) == "3"
    assert fmt.amount_number(0.1) == "0.1"
    assert fmt.amount_number(Fraction(1, 3)).startswith("≈0.333")
    assert fmt.amount(Amount(epsilon=Fraction(1, 5))) == "ε=0.2"


def test_budget_refusal_in_words():
    details = {"requested": {"epsilon": "1/2", "delta": "0", "rho": "0"},
               "remaining": {"epsilon": "1/5", "delta": "0", "rho": "0"},
               "limit": "partner", "dataset": "purchases"}
    message = fmt.budget_message(details)
    assert message.startswith("Not enough privacy budget: this query needs ε=0.5 but only ε=0.2 "
                              "remains of your budget")
    assert "shared by all partners" in fmt.budget_message({**details, "limit": "global"})
    assert "allowed per query" in fmt.budget_message({**details, "limit": "per_query"})


def test_queries_in_words():
    request = {"query": {"aggregates": [{"kind": "count"}, {"kind": "avg", "column": "amount"}],
                         "group_by": ["region"],
                         "where": {"node": "And", "items": [
                             {"node": "Compare", "column": "year", "op": "=", "value": 2024},
                             {"node": "InList", "column": "category", "values": ["snacks"],
                              "negated": True}]}}}
    assert fmt.describe_request(request) == (
        "COUNT(*), AVG(amount) by region where (year = 2024 AND category NOT IN ('snacks'))")


def test_numbers_for_people():
    assert fmt.number(23703.0) == "23,703"
    assert fmt.number(12.3456) == "12.35"
    assert fmt.number(0.01234) == "0.0123"
    assert fmt.number(None) == "–"
    assert fmt.compact(25000) == "25k" and fmt.compact(0.5) == "0.5"


def test_bar_chart_geometry_stays_inside_the_plot():
    answer = {"group_by": ["region"], "rows": [
        {"region": "A", "n": 50.0, "n_ci_low": -10.0, "n_ci_high": 110.0},
        {"region": "B", "n": -5.0, "n_ci_low": -40.0, "n_ci_high": 30.0}]}
    chart = charts.bar_chart(answer, "n")
    assert [b.label for b in chart["bars"]] == ["A", "B"]
    for bar in chart["bars"]:
        assert 0 <= bar.err_low <= bar.point <= bar.err_high <= 100
        assert bar.start <= chart["zero"] <= bar.end or bar.start == chart["zero"]
    assert chart["ticks"][0]["at"] == 0 and chart["ticks"][-1]["at"] == 100


def test_gauge_arc():
    assert charts.gauge(0)["arc"] == "" and charts.gauge(0)["level"] == "low"
    assert charts.gauge(1)["arc"].endswith("90.00 50.00") and charts.gauge(1)["percent"] == 100
    assert charts.gauge(0.3)["level"] == "mid"


def test_nice_ticks_cover_the_range():
    ticks = charts.nice_ticks(-37, 1234)
    assert ticks[0] <= -37 and ticks[-1] >= 1234 and len(ticks) <= 8
