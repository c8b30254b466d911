"""Exact privacy amounts (epsilon, delta, rho) and their arithmetic.

Every amount is a :class:`fractions.Fraction`. Floats are converted through
their shortest decimal ``repr`` so that ``0.1`` means exactly ``1/10``; ten
``0.1`` sum to exactly ``1``. Budgets are never summed in floating point.

Composition rules used by the ledger (basic composition):

* pure DP: epsilons add;
* approximate DP: epsilons add and deltas add;
* zCDP: rhos add. :func:`rho_to_epsilon` reports the implied (epsilon, delta).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from numbers import Rational

from budget.errors import InvalidAmount

#: Largest amount accepted anywhere (budgets included). Bigger is a mistake.
MAX_AMOUNT = Fraction(10**6)
#: Smallest non-zero amount accepted. Smaller is a unit mistake or a subnormal.
MIN_POSITIVE = Fraction(1, 10**20)
#: Denominators past this are refused (a DoS through huge fractions).
MAX_DENOMINATOR = 10**40

_DECIMAL_TEXT = re.compile(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]{1,3})?|\.[0-9]+([eE][+-]?[0-9]{1,3})?")
_SYMBOLS = {"epsilon": "ε", "delta": "δ", "rho": "ρ"}


def parse_amount(value: object, name: str = "epsilon") -> Fraction:
    """Convert a number to an exact, validated, non-negative Fraction.

    Accepts ``int``, ``float``, ``Fraction`` and ``Decimal``. Refuses ``bool``
    (an ``int`` subclass), ``None`` and strings (use :func:`parse_amount_text`
    for text typed by a person), negative numbers, ``-0.0``, NaN, infinities,
    subnormal floats, non-zero values below :data:`MIN_POSITIVE` and values
    above :data:`MAX_AMOUNT`. Raises :class:`InvalidAmount`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Rational, Decimal)):
        raise InvalidAmount(
            f"{name} must be a number, got {type(value).__name__} {value!r}; "
            f"send a JSON number such as 0.5"
        )
    if isinstance(value, float):
        _check_float(value, name)
        value = Fraction(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidAmount(f"{name} must be finite, got {value}; use a number such as 0.5")
        value = Fraction(value)
    return _check_range(Fraction(value), name)


def parse_amount_text(text: str, name: str = "epsilon") -> Fraction:
    """Parse a decimal literal typed by a person (``"0.1"``, ``"1e-6"``) exactly.

    Only plain decimal or scientific notation is accepted; the same range rules
    as :func:`parse_amount` apply. Raises :class:`InvalidAmount`.
    """
    stripped = text.strip() if isinstance(text, str) else text
    if not isinstance(stripped, str) or not _DECIMAL_TEXT.fullmatch(stripped):
        raise InvalidAmount(
            f"{name} must be a non-negative decimal number such as 0.5 or 1e-6, got {text!r}"
        )
    return _check_range(Fraction(Decimal(stripped)), name)


def _check_float(value: float, name: str) -> None:
    if math.isnan(value) or math.isinf(value):
        raise InvalidAmount(f"{name} must be finite, got {value!r}; use a number such as 0.5")
    if value == 0.0 and math.copysign(1.0, value) < 0:
        raise InvalidAmount(f"{name} must not be negative zero (-0.0); use 0 or a positive number")
    if value != 0.0 and abs(value) < sys.float_info.min:
        raise InvalidAmount(
            f"{name}={value!r} is a subnormal float, too small to mean anything; "
            f"use 0 or a value of at least {float(MIN_POSITIVE)}"
        )


def _check_range(value: Fraction, name: str) -> Fraction:
    if value < 0:
        raise InvalidAmount(f"{name} must not be negative, got {_plain(value)}; use 0 or more")
    if value > MAX_AMOUNT:
        raise InvalidAmount(
            f"{name}={_plain(value)} is absurdly large; the most accepted is {_plain(MAX_AMOUNT)}"
        )
    if 0 < value < MIN_POSITIVE:
        raise InvalidAmount(
            f"{name}={_plain(value)} is too small to mean anything; "
            f"use 0 or at least {float(MIN_POSITIVE)}"
        )
    if value.denominator > MAX_DENOMINATOR:
        raise InvalidAmount(f"{name} has too many digits; round it to at most 30 decimals")
    return value


def _plain(value: Fraction) -> str:
    try:
        return f"{float(value):.6g}"
    except OverflowError:
        return f"a {len(str(abs(value.numerator) // value.denominator))}-digit number"


def format_fraction(value: Fraction) -> str:
    """Show a Fraction for people: ``0.50`` when a short decimal, else ``≈0.333333``."""
    for digits in range(2, 9):
        scaled = value * 10**digits
        if scaled.denominator == 1:
            return f"{Decimal(scaled.numerator).scaleb(-digits):.{digits}f}"
    return f"≈{float(value):.6g}"


@dataclass(frozen=True)
class Amount:
    """A privacy amount; every component is an exact, validated Fraction.

    Comparison is component-wise (a partial order): ``a <= b`` means every
    component of ``a`` is at most the same component of ``b``.
    """

    epsilon: Fraction = Fraction(0)
    delta: Fraction = Fraction(0)
    rho: Fraction = Fraction(0)

    def __post_init__(self) -> None:
        for name in ("epsilon", "delta", "rho"):
            object.__setattr__(self, name, parse_amount(getattr(self, name), name))
        if self.delta >= 1:
            raise InvalidAmount(f"delta must be below 1, got {_plain(self.delta)}; use e.g. 1e-6")

    @classmethod
    def zero(cls) -> Amount:
        return cls()

    def components(self) -> dict[str, Fraction]:
        return {"epsilon": self.epsilon, "delta": self.delta, "rho": self.rho}

    def is_zero(self) -> bool:
        return not (self.epsilon or self.delta or self.rho)

    def __add__(self, other: Amount) -> Amount:
        if not isinstance(other, Amount):
            return NotImplemented
        return _unchecked(self.epsilon + other.epsilon, self.delta + other.delta,
                          self.rho + other.rho)

    def saturating_sub(self, other: Amount) -> Amount:
        """``self - other`` component-wise, never below zero (a remaining budget)."""
        return _unchecked(max(self.epsilon - other.epsilon, Fraction(0)),
                          max(self.delta - other.delta, Fraction(0)),
                          max(self.rho - other.rho, Fraction(0)))

    def __le__(self, other: Amount) -> bool:
        if not isinstance(other, Amount):
            return NotImplemented
        return all(a <= b for a, b in zip(self._tuple(), other._tuple()))

    def __lt__(self, other: Amount) -> bool:
        if not isinstance(other, Amount):
            return NotImplemented
        return self <= other and self != other

    def __ge__(self, other: Amount) -> bool:
        return other.__le__(self) if isinstance(other, Amount) else NotImplemented

    def __gt__(self, other: Amount) -> bool:
        return other.__lt__(self) if isinstance(other, Amount) else NotImplemented

    def exceeding(self, limit: Amount) -> list[str]:
        """Names of the components where ``self`` is above ``limit``."""
        return [n for n, v in self.components().items() if v > limit.components()[n]]

    def describe(self, names: list[str] | None = None) -> str:
        """``ε=0.50, δ=0.000001`` — the named (else the non-zero) components."""
        parts = self.components()
        shown = names or [n for n, v in parts.items() if v] or ["epsilon"]
        return ", ".join(f"{_SYMBOLS[n]}={format_fraction(parts[n])}" for n in shown)

    def to_json(self) -> dict[str, str]:
        """Exact JSON form: fractions as strings (``"1/10"``)."""
        return {n: str(v) for n, v in self.components().items()}

    def implied_dp(self, conversion_delta: float = 1e-6) -> tuple[float, float]:
        """The (epsilon, delta)-DP guarantee implied by this amount, for reporting.

        Pure and approximate parts compose with the zCDP part converted by
        :func:`rho_to_epsilon` at ``conversion_delta`` (basic composition).
        Float is fine here: this is a report, never a budget check.
        """
        if not self.rho:
            return float(self.epsilon), float(self.delta)
        eps = float(self.epsilon) + rho_to_epsilon(self.rho, conversion_delta)
        return eps, float(self.delta) + conversion_delta

    def _tuple(self) -> tuple[Fraction, Fraction, Fraction]:
        return (self.epsilon, self.delta, self.rho)


def _unchecked(epsilon: Fraction, delta: Fraction, rho: Fraction) -> Amount:
    """Build an Amount from already-validated parts (sums may pass MAX_AMOUNT)."""
    amount = object.__new__(Amount)
    object.__setattr__(amount, "epsilon", epsilon)
    object.__setattr__(amount, "delta", delta)
    object.__setattr__(amount, "rho", rho)
    return amount


def amount_from_text(epsilon: str, delta: str, rho: str) -> Amount:
    """Rebuild a stored amount from its exact TEXT fractions (``"1/10"``)."""
    return _unchecked(Fraction(epsilon), Fraction(delta), Fraction(rho))


def rho_to_epsilon(rho: Fraction | float, delta: Fraction | float) -> float:
    """Epsilon such that rho-zCDP implies (epsilon, delta)-DP.

    Uses the standard conversion of Bun & Steinke (2016):
    ``epsilon = rho + 2 * sqrt(rho * ln(1 / delta))``. This is for reporting
    only, so a float result is fine; budgets are always checked on rho itself.
    """
    if not 0 < delta < 1:
        raise InvalidAmount(f"delta must be in (0, 1) to convert zCDP, got {delta!r}")
    rho = float(rho)
    if rho < 0:
        raise InvalidAmount(f"rho must not be negative, got {rho!r}")
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / float(delta)))
