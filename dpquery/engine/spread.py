"""VARIANCE and STDDEV from three noisy statistics: post-processing with an interval.

mechanisms.py releases, per group, S1 = Σ(x − c), S2 = Σ(x − c)² and n, the
values clamped to the column's bounds and c the clamp range's midpoint. Then

    population variance = S2/n − (S1/n)²   (sample: times n/(n − 1))

Each statistic's interval is taken at 1 − α/3 (α = 1 − confidence), so all
three hold together with probability at least 1 − α (a union bound); the
variance interval is the range of the formula over those three intervals,
clipped to what clamped values allow ([0, m²], m = half the clamp range).
"""
from __future__ import annotations

import math

import opendp.prelude as dp

from dpquery.engine.vector_plan import discrete_gaussian_accuracy

dp.enable_features("contrib")


def half_width(sp, alpha: float) -> float:
    """A statistic's half-width at error rate `alpha`, in its column's units (from OpenDP).

    The same for a statistic released by OpenDP's polars plan or by an engine
    (vector_plan.py): both state the distribution and scale. The sum of squares
    in units² has scales far above 10,000 units, where the exact discrete
    Gaussian accuracy takes seconds: vector_plan's bound, never narrower, is used.
    """
    unit = sp.stat.unit
    gaussian = "gaussian" in sp.distribution.lower()
    discrete = "integer" in sp.distribution.lower() or "discrete" in sp.distribution.lower()
    to_accuracy = {(True, True): discrete_gaussian_accuracy,
                   (True, False): dp.gaussian_scale_to_accuracy,
                   (False, True): dp.discrete_laplacian_scale_to_accuracy,
                   (False, False): dp.laplacian_scale_to_accuracy}[(gaussian, discrete)]
    return to_accuracy(sp.scale / unit, alpha) * unit


def interval(kind: str, s1: float, s2: float, n: float, widths: tuple, reach: float) -> tuple:
    """(value, low, high) of a variance or standard deviation (kind as in query.SPREADS)."""
    a1, a2, an = widths
    top = reach * reach * (2 if kind.endswith("samp") else 1)  # n/(n − 1) <= 2 for n >= 2
    value = _variance(s1, s2, n, kind.endswith("samp"), top)
    n_lo, n_hi = n - an, n + an
    low, high = 0.0, top
    if n_lo > (1 if kind.endswith("samp") else 0):
        mean_sq = _square_range([m / d for m in (s1 - a1, s1 + a1) for d in (n_lo, n_hi)])
        second = [m / d for m in (s2 - a2, s2 + a2) for d in (n_lo, n_hi)]
        low, high = min(second) - mean_sq[1], max(second) - mean_sq[0]
        if kind.endswith("samp"):  # n/(n − 1) falls as n grows
            low, high = low * n_hi / (n_hi - 1), high * n_lo / (n_lo - 1)
        low, high = min(max(low, 0.0), top), min(max(high, 0.0), top)
    if kind.startswith("stddev"):
        root = (lambda v: None if v is None else math.sqrt(v))
        return root(value), math.sqrt(low), math.sqrt(high)
    return value, low, high


def _variance(s1: float, s2: float, n: float, sample: bool, top: float) -> float | None:
    if not n > (1 if sample else 0) or any(map(math.isnan, (s1, s2, n))):
        return None
    v = s2 / n - (s1 / n) ** 2
    if sample:
        v *= n / (n - 1)
    return min(max(v, 0.0), top)


def _square_range(means: list[float]) -> tuple[float, float]:
    """The range of m² for m between min(means) and max(means)."""
    lo, hi = min(means), max(means)
    smallest = 0.0 if lo <= 0 <= hi else min(lo * lo, hi * hi)
    return smallest, max(lo * lo, hi * hi)
