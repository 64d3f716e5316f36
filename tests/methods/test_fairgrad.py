"""FairGrad: α-fair weights, K w = w^{-1/α}; shared update T·Jᵀw, clipped to max_norm."""

import logging

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from repmtl import methods as M
from tests.methods._helpers import PROPERTY, jacobians, weights_of


def test_hand_case_alpha_two():
    # K = diag(1, 4), α = 2: K_tt w_t = w_t^{-1/2} -> w_t = K_tt^{-2/3}; shared weights T·w
    alpha = weights_of("fairgrad", torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=torch.float64), alpha=2.0, max_norm=0.0)
    np.testing.assert_allclose(alpha, 2 * np.array([1.0, 4 ** (-2 / 3)]), rtol=1e-9)


def test_alpha_one_is_nash_mtl_times_t():
    jac = np.random.default_rng(0).standard_normal((3, 5))
    fair = weights_of("fairgrad", jac, alpha=1.0, max_norm=0.0)
    nash = weights_of("nashmtl", jac, max_norm=0.0)
    np.testing.assert_allclose(fair, 3 * nash, rtol=1e-9)


@PROPERTY
@given(jacobians(max_tasks=12, max_dim=16, full_row_rank=True), st.sampled_from([0.5, 1.0, 2.0, 5.0]))
def test_solves_the_fairness_equation(jac, a):
    method = M.create("fairgrad", alpha=a, max_norm=0.0, tasks=[str(i) for i in range(jac.shape[0])])
    w = weights_of(method, jac) / jac.shape[0]
    assert method.info["fallback"] is False
    assert np.all(w > 0)
    np.testing.assert_allclose((jac @ jac.T @ w) * w ** (1 / a), 1.0, rtol=1e-8)


@PROPERTY
@given(jacobians(max_tasks=12))
def test_default_clip_bounds_the_update(jac):
    alpha = weights_of("fairgrad", jac)
    assert np.all(np.isfinite(alpha))
    assert np.linalg.norm(jac.T @ alpha) <= 1.0 + 1e-9


def test_no_solution_falls_back_to_equal_weighting(caplog):
    method = M.create("fairgrad", max_norm=0.0, tasks=["a", "b"])
    with caplog.at_level(logging.WARNING):
        alpha = weights_of(method, np.array([[1.0, 2.0], [-1.0, -2.0]]))
    np.testing.assert_array_equal(alpha, [1.0, 1.0])
    assert method.info["fallback"] is True and "fairgrad" in caplog.text


def test_zero_gradient_task_gets_zero_weight():
    alpha = weights_of("fairgrad", np.array([[1.0, 0.0], [0.0, 0.0]]), max_norm=0.0)
    np.testing.assert_allclose(alpha, [2.0, 0.0])  # K = [1]: w = 1, times T = 2


def test_heads_get_plain_gradients():
    result = M.create("fairgrad", tasks=["a", "b"]).weights(torch.eye(2, dtype=torch.float64), torch.ones(2))
    torch.testing.assert_close(result.for_heads, torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("bad", [{"alpha": 0.0}, {"alpha": -1.0}, {"alpha": float("inf")}, {"max_norm": -0.5}])
def test_bad_hyper_parameters_raise(bad):
    with pytest.raises(ValueError):
        M.create("fairgrad", **bad)
