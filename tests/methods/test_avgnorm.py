"""AvgNorm (Guo et al., arXiv 2509.23915, 2025, Eq. 6): w_i = ||Σ g|| / ||g_i||."""

import numpy as np
import pytest
import torch
from hypothesis import given

from tests.methods._helpers import PROPERTY, jacobians, weights_of


def test_hand_case():
    # g1=(3,0), g2=(0,4): ||g1+g2|| = 5
    np.testing.assert_allclose(weights_of("avgnorm", np.array([[3.0, 0.0], [0.0, 4.0]])), [5 / 3, 5 / 4])


def test_zero_gradient_gets_weight_one_and_cancelling_sum_gives_zero():
    np.testing.assert_allclose(weights_of("avgnorm", np.array([[3.0, 0.0], [0.0, 0.0]])), [1.0, 1.0])
    np.testing.assert_allclose(weights_of("avgnorm", np.array([[1.0, 2.0], [-1.0, -2.0]])), [0.0, 0.0])


@PROPERTY
@given(jacobians(max_tasks=16))
def test_every_weighted_gradient_has_the_norm_of_the_sum(jac):
    alpha = weights_of("avgnorm", jac)
    norms = np.linalg.norm(jac, axis=1)
    total = np.linalg.norm(jac.sum(axis=0))
    nonzero = norms > 0
    # from K, ‖Σ g‖ = sqrt(1ᵀK1) carries an absolute error ~ sqrt(eps Σ|K_ij|) when the sum cancels
    atol = 10 * np.sqrt(np.finfo(float).eps * np.abs(jac @ jac.T).sum()) + 1e-9 * norms.max()
    np.testing.assert_allclose(alpha[nonzero] * norms[nonzero], total, rtol=1e-6, atol=atol)


@PROPERTY
@given(jacobians(max_tasks=8))
def test_invariant_to_the_gradient_scale(jac):
    # ‖Σ g‖² = 1ᵀK1 is a sum of terms of size Σ|K_ij|; when they cancel, its relative rounding grows
    k = jac @ jac.T
    cancellation = np.abs(k).sum() / max(k.sum(), np.finfo(float).tiny)
    rtol = 1e-12 + 100 * np.finfo(float).eps * cancellation
    np.testing.assert_allclose(weights_of("avgnorm", jac), weights_of("avgnorm", 7.0 * jac), rtol=rtol)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gramian_gives_finite_weights(bad):
    k = torch.eye(3, dtype=torch.float64)
    k[0, 1] = k[1, 0] = bad
    alpha = weights_of("avgnorm", k)
    assert np.all(np.isfinite(alpha))
