"""Aligned-MTL: B = sqrt(σ_scale) V Σ^{-1/2} Vᵀ, aligned gradients orthogonal with equal norms."""

import logging

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from repmtl import methods as M
from repmtl.methods.alignedmtl import balance_matrix
from tests.methods._helpers import (
    PROPERTY,
    jacobians,
    shared_weights,
    unit_gramian,
    weights_of,
)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # K = diag(1, 4, 9): B = sqrt(s) diag(1, 1/2, 1/3) with s = 1 (min), 4 (median), 14/3 (mean)
        ("min", [1.0, 1 / 2, 1 / 3]),
        ("median", [2.0, 1.0, 2 / 3]),
        ("rmse", list(np.sqrt(14 / 3) * np.array([1.0, 1 / 2, 1 / 3]))),
    ],
)
def test_hand_cases(mode, expected):
    k = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
    np.testing.assert_allclose(weights_of("alignedmtl", k, scale_mode=mode), expected, rtol=1e-12)


def test_rotated_case_aligns_to_equal_norm_orthogonal_gradients():
    # g1 = (2, 0), g2 = (1, 1): after alignment the two columns of Jᵀ B are orthogonal, equal norm
    jac = np.array([[2.0, 0.0], [1.0, 1.0]])
    b, rank = balance_matrix(jac @ jac.T)
    aligned = jac.T @ b
    assert rank == 2
    assert aligned[:, 0] @ aligned[:, 1] == pytest.approx(0.0, abs=1e-12)
    assert np.linalg.norm(aligned[:, 0]) == pytest.approx(np.linalg.norm(aligned[:, 1]))
    np.testing.assert_allclose(weights_of("alignedmtl", jac), b.sum(axis=1))


def _tolerance(k):
    """Rounding in the eigenvectors of ``K`` is amplified by its condition number on the retained
    eigenvalues (``B`` involves ``σ^{-1/2}``): ``1e-9 + 1e4·eps·cond``."""
    eig = np.linalg.eigvalsh(k)
    kept = eig[eig > eig.max() * len(eig) * np.finfo(float).eps]
    return 1e-9 + 1e4 * np.finfo(float).eps * (kept.max() / kept.min() if kept.size else 1.0)


@PROPERTY
@given(jacobians(max_tasks=12), st.sampled_from(["min", "median", "rmse"]))
def test_balanced_gramian_is_a_scaled_projector(jac, mode):
    """``B K B = σ_scale · P`` with ``P`` the projector on the retained eigenvectors (the
    identity at full rank): the aligned gradients are orthogonal with one common norm."""
    k = unit_gramian(jac)
    b, rank = balance_matrix(k, mode)
    balanced = b @ k @ b
    if rank == 0:
        np.testing.assert_array_equal(b, np.eye(len(k)))
        return
    target = np.trace(balanced) / rank
    assert target > 0
    projector = balanced / target
    tol = _tolerance(k)
    np.testing.assert_allclose(projector @ projector, projector, atol=tol)
    assert np.trace(projector) == pytest.approx(rank, abs=tol * rank)


@PROPERTY
@given(jacobians(min_tasks=2, max_tasks=8, full_row_rank=True))
def test_full_rank_min_mode_gives_smallest_eigenvalue_times_identity(jac):
    k = unit_gramian(jac)
    b, rank = balance_matrix(k, "min")
    assert rank == len(k)
    smallest = np.linalg.eigvalsh(k).min()
    np.testing.assert_allclose(b @ k @ b / smallest, np.eye(len(k)), atol=_tolerance(k))


def test_zero_gramian_gives_equal_weights():
    np.testing.assert_array_equal(weights_of("alignedmtl", np.zeros((3, 4))), [1.0, 1.0, 1.0])


def test_non_finite_gramian_falls_back(caplog):
    method = M.create("alignedmtl", tasks=["a", "b"])
    with caplog.at_level(logging.WARNING):
        alpha = shared_weights(method.weights(torch.tensor([[float("inf"), 0.0], [0.0, 1.0]], dtype=torch.float64), torch.ones(2)))
    np.testing.assert_array_equal(alpha.numpy(), [1.0, 1.0])
    assert method.info["fallback"] is True


def test_bad_scale_mode_raises():
    with pytest.raises(ValueError, match="scale_mode"):
        M.create("alignedmtl", scale_mode="max")
