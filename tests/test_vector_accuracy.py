"""Accuracy of engine statistics under zCDP: the fast bound for large discrete Gaussian scales."""
from __future__ import annotations

import opendp.prelude as dp
import pytest

from dpquery.engine import vector_plan

dp.enable_features("contrib")


@pytest.mark.parametrize("scale", [10_000.5, 12_345.0, 40_000.0])
@pytest.mark.parametrize("alpha", [0.05, 0.025, 0.001])
def test_large_scales_are_never_narrower_than_opendps_exact_accuracy(scale, alpha):
    exact = dp.discrete_gaussian_scale_to_accuracy(scale, alpha)
    fast = vector_plan.discrete_gaussian_accuracy(scale, alpha)
    assert exact <= fast <= exact + 1


def test_small_scales_use_opendps_exact_accuracy():
    assert vector_plan.discrete_gaussian_accuracy(50.0, 0.05) == \
        dp.discrete_gaussian_scale_to_accuracy(50.0, 0.05)
