"""OpenDP's noise on a vector of exact bounded aggregates (the engines' release).

The scale is the one the plan sized with OpenDP's privacy map of the reference
measurement for the same statistic (plan.py); here OpenDP's vector
measurement at that scale is built (discrete Laplace on integers for pure DP,
discrete Gaussian for zCDP) and accepted only if its own privacy map, at the
sensitivity the bounds imply (bounded.sensitivity), fits the statistic's share.
"""
from __future__ import annotations

import opendp.prelude as dp

from dpquery.errors import InternalError

dp.enable_features("contrib")


def measurement(scale: float, measure: str):
    """OpenDP's integer-vector mechanism at `scale` (Laplace, or Gaussian under zCDP)."""
    domain = dp.vector_domain(dp.atom_domain(T=dp.i64))
    if measure == "rho":
        return dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale=scale)
    return dp.m.make_laplace(domain, dp.l1_distance(T=dp.i64), scale=scale)


def loss(scale: float, measure: str, sensitivity: float) -> float:
    """OpenDP's privacy map of the vector mechanism at this sensitivity (ε or ρ)."""
    d_in = float(sensitivity) if measure == "rho" else _whole(sensitivity)
    return measurement(scale, measure).map(d_in)


def check(scale: float, measure: str, sensitivity: float, share: float) -> None:
    """Refuse (a bug, before any data is read) a scale whose loss exceeds its share."""
    if not loss(scale, measure, sensitivity) <= share:
        raise InternalError()


def release(values: list[int], scale: float, measure: str, sensitivity: float,
            share: float) -> list[int]:
    """Noisy copies of `values`.

    Privacy contract: if one customer changes `values` by at most
    `sensitivity` (L1 for ε, L2 for ρ), this release is share-DP (ε-DP, or
    ρ-zCDP), as OpenDP's privacy map of the measurement confirms first.
    """
    check(scale, measure, sensitivity, share)
    return measurement(scale, measure)(values)


def _whole(value: float) -> int:
    if value != int(value):
        raise InternalError()  # L1 sensitivities of integer cells are whole numbers
    return int(value)
