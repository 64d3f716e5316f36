"""PCGrad (existing method): gradient surgery, checked in Gramian coefficients."""

import numpy as np
import pytest
import torch
from hypothesis import given

from repmtl.methods.pcgrad import pcgrad_coefficients
from tests.methods._helpers import PROPERTY, jacobians, unit_gramian, weights_of


def test_two_conflicting_tasks():
    # g1=(1,0), g2=(-1,1): g1' = g1 + g2/2 = (1/2, 1/2), g2' = g2 + g1 = (0, 1)
    # coefficients (1, 1/2) and (1, 1): alpha = (2, 3/2)
    jac = np.array([[1.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(weights_of("pcgrad", jac), [2.0, 1.5], atol=1e-12)
    np.testing.assert_allclose(weights_of("pcgrad", jac, reduction="mean"), [1.0, 0.75], atol=1e-12)


def test_non_conflicting_tasks_are_summed():
    jac = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    np.testing.assert_allclose(weights_of("pcgrad", jac), [1.0, 1.0, 1.0], atol=1e-12)


def test_three_tasks_follow_the_given_order():
    # g1=(1,0), g2=(-1,1), g3=(0,-1). Task 1 projected against 2 then 3:
    # vs g2: g1·g2=-1 -> g1' = g1 + g2/2 = (1/2,1/2); vs g3: g1'·g3 = -1/2 -> + (1/2) g3 -> (1/2, 0)
    k = np.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    k = k @ k.T
    coeff = pcgrad_coefficients(k, [[1, 2], [0, 2], [0, 1]])
    np.testing.assert_allclose(coeff[0], [1.0, 0.5, 0.5], atol=1e-12)


@PROPERTY
@given(jacobians(min_tasks=2, max_tasks=2))
def test_two_tasks_update_does_not_conflict(jac):
    """For two tasks the PCGrad update has a non-negative inner product with both gradients."""
    alpha = weights_of("pcgrad", jac)
    assert np.all(unit_gramian(jac) @ alpha >= -1e-9)


@PROPERTY
@given(jacobians(min_tasks=2, max_tasks=2))
def test_two_tasks_result_is_order_independent(jac):
    torch.manual_seed(0)
    a = weights_of("pcgrad", jac)
    torch.manual_seed(123)
    b = weights_of("pcgrad", jac)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


def test_bad_reduction_raises():
    from repmtl import methods as M

    with pytest.raises(ValueError, match="reduction"):
        M.create("pcgrad", reduction="max")
