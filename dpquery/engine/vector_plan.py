"""Scales, accuracy and checks for the statistics an engine releases (noise.py).

An engine computes a part's exact bounded aggregates; OpenDP's vector
mechanism adds the noise. Its scale is sized here with OpenDP's privacy map of
that vector measurement at the sensitivity the bounds imply
(bounded.sensitivity): the smallest scale found whose loss fits the
statistic's share. So the charge is what the noise delivers: G groups kept,
G charged (the reference path too, reference.py). Accuracy comes from OpenDP's
scale-to-accuracy functions for the same distributions.
"""
from __future__ import annotations

import math

import opendp.prelude as dp

from dpquery.engine import bounded, noise
from dpquery.errors import InternalError

SLACK = 1e-9  # as plan.SLACK: float sums of shares may round up; the charge never does
DISTRIBUTIONS = {"epsilon": "Integer Laplace", "rho": "Integer Gaussian"}


def stat_sensitivity(part: bounded.Part, sp, measure: str) -> float:
    """L1 (ε) or L2 (ρ) sensitivity of one statistic's vector over all groups."""
    return bounded.sensitivity(part, sp.stat.cell, "l2" if measure == "rho" else "l1")


def size(parts: list, measure: str, confidence: float) -> float:
    """Size every engine statistic of `parts` [(Part, [StatPlan])]; return their total loss."""
    total = 0.0
    for part, sps in parts:
        for sp in sps:
            sens = stat_sensitivity(part, sp, measure)
            sp.param = scale_for(measure, sens, sp.share)
            _annotate(sp, measure, confidence)
            total += noise.loss(sp.param, measure, sens)
    return total


def check(parts: list, measure: str) -> None:
    """Each engine statistic: OpenDP's vector map at its sensitivity fits its share."""
    for part, sps in parts:
        for sp in sps:
            noise.check(sp.param, measure, stat_sensitivity(part, sp, measure), sp.share)


def scale_for(measure: str, sensitivity: float, share: float) -> float:
    """The smallest scale found whose OpenDP loss fits `share` (power-law guess, nudged up)."""
    power = 2.0 if measure == "rho" else 1.0
    target = share * (1 - SLACK)
    scale = (noise.loss(1.0, measure, sensitivity) / target) ** (1.0 / power)
    for i in range(60):
        if noise.loss(scale, measure, sensitivity) <= target:
            return scale
        scale *= 1 + 1e-9 * 4 ** i
    raise InternalError()


def _annotate(sp, measure: str, confidence: float) -> None:
    """Distribution, reported scale and half-widths (at α and α/2) from OpenDP."""
    to_accuracy = discrete_gaussian_accuracy if measure == "rho" \
        else dp.discrete_laplacian_scale_to_accuracy
    alpha = 1 - confidence
    unit = sp.stat.unit
    sp.distribution = DISTRIBUTIONS[measure]
    sp.scale = sp.param * unit
    sp.accuracy = to_accuracy(sp.param, alpha) * unit
    sp.accuracy_half = to_accuracy(sp.param, alpha / 2) * unit



EXACT_GAUSSIAN_UP_TO = 10_000.0  # larger scales: the continuous bound below


def discrete_gaussian_accuracy(scale: float, alpha: float) -> float:
    """OpenDP's discrete Gaussian accuracy, or above a scale of 10,000 units OpenDP's
    continuous one rounded up to a whole unit, plus one.

    OpenDP sums the discrete law's mass term by term, in time linear in the scale:
    0.35 s per call for an AVG's sum in cents on zCDP, four calls per ratio. At such
    scales the discrete and continuous laws differ by far less than one unit (the
    two results measured 0 or 1 unit apart from scale 3 to 5,000), so the rounded-up
    continuous accuracy plus one unit is never narrower than the exact one.
    """
    if scale <= EXACT_GAUSSIAN_UP_TO:
        return dp.discrete_gaussian_scale_to_accuracy(scale, alpha)
    return math.ceil(dp.gaussian_scale_to_accuracy(scale, alpha)) + 1.0
