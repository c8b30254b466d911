"""Exact privacy amounts: parsing, refusals, arithmetic."""

from decimal import Decimal
from fractions import Fraction

import pytest

from budget import Amount, InvalidAmount, Ledger, parse_amount, parse_amount_text, rho_to_epsilon
from budget.amounts import format_fraction

BAD_AMOUNTS = [-0.1, -1, -0.0, float("nan"), float("inf"), float("-inf"), 1e-320, 1e308,
               10**7, "0.1", True, False, None, [0.1], Decimal("NaN"), Fraction(-1, 3),
               Fraction(1, 10**30)]


def test_ten_tenths_make_exactly_one():
    total = Amount()
    for _ in range(10):
        total = total + Amount(epsilon=0.1)
    assert total.epsilon == 1
    assert total == Amount(epsilon=1)
    assert sum([0.1] * 10) != 1.0  # the float sum the ledger must not do


def test_one_is_less_than_one_and_a_bit():
    assert Amount(epsilon=1.0) < Amount(epsilon=1.0000000001)
    assert not Amount(epsilon=1.0000000001) <= Amount(epsilon=1.0)
    assert parse_amount(1.0000000001) == Fraction(10000000001, 10**10)


def test_float_means_its_decimal_repr():
    assert parse_amount(0.1) == Fraction(1, 10)
    assert parse_amount(1e-6) == Fraction(1, 10**6)
    assert parse_amount(Decimal("0.25")) == Fraction(1, 4)
    assert parse_amount(3) == 3 and parse_amount(Fraction(1, 3)) == Fraction(1, 3)


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
def test_bad_amounts_are_refused_with_the_value_named(value):
    with pytest.raises(InvalidAmount) as info:
        Amount(epsilon=value)
    assert "epsilon" in str(info.value)


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
def test_bad_amounts_leave_the_ledger_unchanged(shared_ledger, value):
    ledger = shared_ledger
    pid, _ = ledger.create_partner("ifa", {"purchases": Amount(epsilon=1)}, actor="t")
    before = ledger.ledger_entries()
    with pytest.raises(InvalidAmount):
        ledger.reserve(pid, "purchases", value, "r1", "q")
    with pytest.raises(InvalidAmount):
        ledger.set_budget(pid, "purchases", value, "t", "why")
    assert ledger.ledger_entries() == before
    assert ledger.reservations(pid) == []
    assert ledger.remaining(pid, "purchases") == Amount(epsilon=1)


def test_delta_must_be_below_one():
    with pytest.raises(InvalidAmount, match="delta"):
        Amount(epsilon=1, delta=1)


@pytest.mark.parametrize("text,expected", [("0.1", Fraction(1, 10)), ("1e-6", Fraction(1, 10**6)),
                                           (" 2 ", Fraction(2)), (".5", Fraction(1, 2))])
def test_text_is_parsed_exactly(text, expected):
    assert parse_amount_text(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "nan", "inf", "1/3", "0x10", "1e999", "1e-400"])
def test_bad_text_is_refused(text):
    with pytest.raises(InvalidAmount):
        parse_amount_text(text)


def test_saturating_sub_and_exceeding():
    budget = Amount(epsilon=1, rho=Fraction(1, 2))
    spent = Amount(epsilon=0.4, rho=1)
    assert budget.saturating_sub(spent) == Amount(epsilon=0.6)
    assert Amount(rho=0.1).exceeding(budget.saturating_sub(spent)) == ["rho"]


def test_describe_shows_the_numbers():
    assert Amount(epsilon=0.5).describe() == "ε=0.50"
    assert Amount(epsilon=Fraction(1, 3)).describe() == "ε=≈0.333333"
    assert format_fraction(Fraction(1, 10**6)) == "0.000001"


def test_rho_to_epsilon_standard_conversion():
    import math
    assert rho_to_epsilon(0.5, 1e-6) == pytest.approx(0.5 + 2 * math.sqrt(0.5 * math.log(1e6)))
    assert rho_to_epsilon(0, 1e-6) == 0
    eps, delta = Amount(epsilon=0.1, rho=0.5).implied_dp(1e-6)
    assert eps == pytest.approx(0.1 + rho_to_epsilon(0.5, 1e-6)) and delta == 1e-6
    with pytest.raises(InvalidAmount):
        rho_to_epsilon(0.5, 0)
