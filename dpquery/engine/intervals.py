"""Confidence intervals for ratios (AVG, PURCHASE_RATE) from released values.

Post-processing only: everything here reads released noisy values and the
public law of their noise (distribution and scale, from the plan), never the
data, so it costs no privacy. Nothing here is random: the same released
values always give the same interval (a repeat shows the stored answer anyway).

Construction: an exact Fieller-type interval by test inversion. A ratio
r = n/d is released as N = n + Zn and D = d + Zd, with independent,
symmetric noises of known law. At the true r, N − r·D = Zn − r·Zd, whose law
depends on r alone (not on n or d): a pivot. The interval is every r of the
domain where |N − r·D| is within q(|r|), the (1 − α/2) quantile of
Zn − r·Zd, so it covers the true ratio with probability at least 1 − α
(integer noise makes it slightly conservative). When D cannot be told from 0,
N − r·D ≈ N for every r and the whole domain is returned; if no r of the
domain passes (an unusual draw far outside it), the whole domain is returned
too. The quantile is computed, not simulated: P(Zn − r·Zd ≤ t) is a sum over
Zd's atoms of Zn's distribution function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dpquery.errors import InternalError

TAIL = 1e-13        # probability left out of a noise's atoms on each side
MAX_ATOMS = 2001    # larger integer laws are represented by equal-weight quantile points
EXACT_GAUSS = 2000  # integer Gaussians up to this σ (in steps) are tabulated exactly
TABLE_POINTS = 65   # |r| values at which the quantile is computed (interpolated between)
GRID = 512          # domain segments on which each cell's interval is solved
BISECTIONS = 36     # halvings of [0, 60 scales]: the quantile to about 1e-9 of a scale
_Z = np.linspace(-40.0, 40.0, 160_001)
_PHI = np.array([0.5 * math.erfc(-z / math.sqrt(2)) for z in _Z])  # standard normal CDF


@dataclass(frozen=True)
class Noise:
    """The law of one released statistic's noise, in the answer's units.

    `scale` is Laplace's b or Gaussian's σ; `step` the lattice spacing of
    integer noise (None: continuous noise).
    """

    gaussian: bool
    scale: float
    step: float | None

    @classmethod
    def of(cls, sp) -> "Noise":
        """From a StatPlan: its public distribution and scale (column units)."""
        name = sp.distribution
        if not ("Laplace" in name or "Gaussian" in name) or not sp.scale > 0:
            raise InternalError()
        return cls("Gaussian" in name, float(sp.scale),
                   float(sp.stat.unit) if name.startswith("Integer") else None)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """P(Z <= x), elementwise."""
        if self.step is None:
            return _normal_cdf(x / self.scale) if self.gaussian else _laplace_cdf(x / self.scale)
        k = np.floor(x / self.step + 1e-9)
        b = self.scale / self.step
        if not self.gaussian:
            return np.where(k >= 0, 1 - np.exp(-(np.maximum(k, 0) + 1) / b) / (1 + math.exp(-1 / b)),
                            np.exp(np.minimum(k, 0) / b) / (1 + math.exp(-1 / b)))
        if b > EXACT_GAUSS:  # midpoint rule: indistinguishable from the exact sum here
            return _normal_cdf((k + 0.5) / b)
        support, cumulative = _discrete_gaussian(b)
        index = np.clip(k + support, -1, 2 * support).astype(np.int64)
        return np.where(index < 0, 0.0, cumulative[np.maximum(index, 0)])

    def atoms(self) -> tuple[np.ndarray, np.ndarray]:
        """(points, weights) representing the law: exact for small integer laws,
        else MAX_ATOMS equal-weight quantile points of the continuous law."""
        if self.step is not None:
            b = self.scale / self.step
            reach = math.ceil(b * math.sqrt(2 * math.log(1 / TAIL)) if self.gaussian
                              else b * math.log(1 / TAIL)) + 1
            if 2 * reach + 1 <= MAX_ATOMS:
                ks = np.arange(-reach, reach + 1, dtype=float)
                w = np.exp(-ks ** 2 / (2 * b * b)) if self.gaussian else np.exp(-np.abs(ks) / b)
                return ks * self.step, w / w.sum()
        u = (np.arange(MAX_ATOMS) + 0.5) / MAX_ATOMS
        if self.gaussian:
            z = np.interp(u, _PHI, _Z)
        else:
            z = np.sign(u - 0.5) * -np.log1p(-2 * np.abs(u - 0.5))
        return z * self.scale, np.full(MAX_ATOMS, 1 / MAX_ATOMS)

    def spread(self) -> float:
        """A bound beyond which no meaningful probability lies (for bracketing)."""
        return 60 * self.scale + (self.step or 0.0)


def _laplace_cdf(z: np.ndarray) -> np.ndarray:
    return np.where(z >= 0, 1 - 0.5 * np.exp(-np.abs(z)), 0.5 * np.exp(-np.abs(z)))


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return np.interp(z, _Z, _PHI)


@lru_cache(maxsize=32)
def _discrete_gaussian(sigma: float) -> tuple[int, np.ndarray]:
    """(support K, cumulative probabilities at -K..K) of the integer Gaussian."""
    support = math.ceil(sigma * 9) + 1
    ks = np.arange(-support, support + 1, dtype=float)
    w = np.exp(-ks ** 2 / (2 * sigma * sigma))
    return support, np.cumsum(w / w.sum())


def quantiles(num: Noise, den: Noise, rs: np.ndarray, alpha: float) -> np.ndarray:
    """q(r): the least t with P(Zn − r·Zd <= t) >= 1 − α/2, for each r (bisection)."""
    points, weights = den.atoms()
    rs = np.abs(np.asarray(rs, dtype=float))
    lo = np.zeros_like(rs)
    hi = np.full_like(rs, num.spread()) + rs * den.spread()
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        cdf = num.cdf(mid[:, None] + rs[:, None] * points[None, :]) @ weights
        ok = cdf >= 1 - alpha / 2
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return hi


@lru_cache(maxsize=64)
def _table(num: Noise, den: Noise, reach: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    rs = np.linspace(0.0, reach, TABLE_POINTS)
    return rs, quantiles(num, den, rs, alpha)


def ratio_intervals(nums, dens, num: Noise, den: Noise, domain: tuple[float, float],
                    confidence: float) -> list[tuple[float | None, float, float]]:
    """(value, low, high) of num/den for each released pair (cells of one aggregate).

    `domain` bounds the true ratio (e.g. [0, 1] for a rate); the value is
    num/den clipped to it, None when den <= 0.
    """
    nums, dens = np.asarray(nums, dtype=float), np.asarray(dens, dtype=float)
    lo, hi = float(domain[0]), float(domain[1])
    if nums.size == 0:
        return []
    if hi <= lo:
        return [(lo, lo, lo)] * nums.size
    rs, qs = _table(num, den, max(abs(lo), abs(hi)), round(1 - confidence, 12))
    grid = np.linspace(lo, hi, GRID + 1)
    q = np.interp(np.abs(grid), rs, qs)
    finite = np.isfinite(nums) & np.isfinite(dens)
    n, d = np.where(finite, nums, 0.0), np.where(finite, dens, 0.0)
    t = n[:, None] - grid[None, :] * d[:, None]  # N − r·D at every grid point
    low, high = _accepted_hull(t - q, -(t + q), grid)
    out = []
    for i in range(nums.size):
        value = min(max(n[i] / d[i], lo), hi) if finite[i] and d[i] > 0 else None
        if not finite[i] or low[i] > high[i]:
            out.append((value, lo, hi))
        else:
            out.append((value, float(low[i]), float(high[i])))
    return out


def _accepted_hull(a: np.ndarray, b: np.ndarray, grid: np.ndarray) -> tuple:
    """Per row, the least and greatest r where a <= 0 and b <= 0 (both linear
    between grid points); low > high where no r qualifies."""
    a_lo, a_hi = _below_zero(a[:, :-1], a[:, 1:])
    b_lo, b_hi = _below_zero(b[:, :-1], b[:, 1:])
    start, end = np.maximum(a_lo, b_lo), np.minimum(a_hi, b_hi)
    ok = start <= end
    step = np.diff(grid)[None, :]
    r_start = np.where(ok, grid[None, :-1] + start * step, np.inf)
    r_end = np.where(ok, grid[None, :-1] + end * step, -np.inf)
    return r_start.min(axis=1), r_end.max(axis=1)


def _below_zero(v0: np.ndarray, v1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[t0, t1] within [0, 1] where v0 + (v1 − v0)·t <= 0 (t0 > t1: nowhere)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = np.where(v0 != v1, v0 / (v0 - v1), 0.0)
    t0 = np.where(v0 <= 0, 0.0, np.where(v1 <= 0, cross, 2.0))
    t1 = np.where(v1 <= 0, 1.0, np.where(v0 <= 0, cross, -1.0))
    return t0, t1


def expected_halfwidth(num: Noise, den: Noise, magnitude: float, size: float,
                       confidence: float) -> float:
    """The half-width this construction gives when the released values are
    exactly magnitude·size over size (inf when size cannot be told from 0).

    The farther side of r = |magnitude| solves w = q(|magnitude| + w) / size.
    """
    alpha, m, w = 1 - confidence, abs(magnitude), 0.0
    for _ in range(200):
        new = float(quantiles(num, den, np.array([m + w]), alpha)[0]) / size
        if not math.isfinite(new) or new > 1e12 * (m + 1):
            return math.inf
        if abs(new - w) <= 1e-9 * max(new, 1e-300):
            return new
        w = new
    return math.inf


def corner_interval(num: float, den: float, a_num: float, a_den: float, domain) -> tuple:
    """The former construction (each part's interval at α/2, corner ratios): kept
    only for the benchmark that compares widths (bench/bench_intervals.py)."""
    lo_dom, hi_dom = domain
    value = min(max(num / den, lo_dom), hi_dom) if den > 0 else None
    den_lo, den_hi = den - a_den, den + a_den
    if den_lo <= 0:
        return value, lo_dom, hi_dom
    corners = [n / d for n in (num - a_num, num + a_num) for d in (den_lo, den_hi)]
    return value, min(max(min(corners), lo_dom), hi_dom), min(max(max(corners), lo_dom), hi_dom)


def sum_halfwidth(noise: Noise, k: int, confidence: float) -> float:
    """Half-width at `confidence` of the sum of k independent draws of `noise`
    (derived answers: noisy cells added up).

    Computed by FFT convolution on a lattice: the noise's own for small integer
    laws (exact), else a grid of step h = scale/200 with each draw rounded to
    it; rounding moves the sum by at most k·h/2, which is added (conservative).
    """
    if noise.step is not None and noise.scale / noise.step <= 200:
        h, slack = noise.step, 0.0
    else:
        h = noise.scale / 200
        slack = k * h / 2
    reach = math.ceil(noise.spread() / h / 2)
    edges = (np.arange(-reach, reach + 2) - 0.5) * h
    pmf = np.diff(noise.cdf(edges) if noise.step is None or h == noise.step
                  else _continuous(noise).cdf(edges))
    size = 1 << int(math.ceil(math.log2(k * (2 * reach) + 1)))
    total = np.fft.irfft(np.fft.rfft(pmf, size) ** k, size)[: k * 2 * reach + 1]
    cdf = np.cumsum(np.clip(total, 0, None))
    index = int(np.searchsorted(cdf / cdf[-1], 1 - (1 - confidence) / 2))
    return (index - k * reach) * h + slack


def _continuous(noise: Noise) -> Noise:
    return Noise(noise.gaussian, noise.scale, None)
