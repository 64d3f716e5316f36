"""Nash-MTL: the bargaining solution K α = 1/α, α > 0."""

import logging

import numpy as np
import pytest
import torch
from hypothesis import given

from repmtl import methods as M
from tests.methods._helpers import PROPERTY, gram, jacobians, weights_of


def _nash(num_tasks, **hparams):
    return M.create("nashmtl", tasks=[f"t{i}" for i in range(num_tasks)], **hparams)


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        ([[1.0, 0.0], [0.0, 4.0]], [1.0, 0.5]),  # diagonal: α_t = 1/sqrt(K_tt)
        ([[2.0, 1.0], [1.0, 2.0]], [3**-0.5, 3**-0.5]),  # 3a = 1/a
        ([[1.0, 1.0], [1.0, 1.0]], [2**-0.5, 2**-0.5]),  # duplicated task: 2a = 1/a
        ([[4.0]], [0.5]),
    ],
)
def test_hand_cases(k, expected):
    alpha = weights_of(_nash(len(k), max_norm=0.0), torch.tensor(k, dtype=torch.float64))
    np.testing.assert_allclose(alpha, expected, rtol=1e-9)


def test_official_max_norm_clips_the_update_to_one():
    # K = diag(1, 4): α = (1, 1/2), ‖Jᵀα‖² = αᵀKα = T = 2 > 1 -> scaled by 1/sqrt(2)
    alpha = weights_of(_nash(2), torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=torch.float64))
    np.testing.assert_allclose(alpha, np.array([1.0, 0.5]) / np.sqrt(2), rtol=1e-9)


@PROPERTY
@given(jacobians(max_tasks=16, max_dim=20, full_row_rank=True))
def test_solves_the_bargaining_equation(jac):
    method = _nash(jac.shape[0], max_norm=0.0)
    alpha = weights_of(method, jac)
    assert method.info["fallback"] is False
    k = jac @ jac.T
    assert np.all(alpha > 0)
    np.testing.assert_allclose((k @ alpha) * alpha, 1.0, rtol=1e-8)


@PROPERTY
@given(jacobians(max_tasks=16, max_dim=20, full_row_rank=True))
def test_clipped_update_has_norm_min_sqrt_t_and_max_norm(jac):
    alpha = weights_of(_nash(jac.shape[0], max_norm=1.0), jac)
    assert np.linalg.norm(jac.T @ alpha) == pytest.approx(min(np.sqrt(jac.shape[0]), 1.0), rel=1e-8)


def test_zero_gradient_task_is_left_out_and_gets_the_mean_weight():
    jac = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    alpha = weights_of(_nash(3, max_norm=0.0), jac)
    np.testing.assert_allclose(alpha, [1.0, 0.75, 0.5], rtol=1e-9)


def test_no_solution_falls_back_to_the_previous_weights(caplog):
    method = _nash(2, max_norm=0.0)
    first = weights_of(method, np.array([[1.0, 0.0], [0.0, 2.0]]))
    with caplog.at_level(logging.WARNING):
        second = weights_of(method, np.array([[1.0, 1.0], [-1.0, -1.0]]))  # Pareto-stationary
    assert method.info["fallback"] is True
    assert "nashmtl" in caplog.text
    np.testing.assert_array_equal(second, first)
    fresh = _nash(2, max_norm=0.0)
    np.testing.assert_array_equal(weights_of(fresh, np.array([[1.0, 1.0], [-1.0, -1.0]])), [1.0, 1.0])


def test_update_weights_every_reuses_the_previous_solution():
    method = _nash(2, max_norm=0.0, update_weights_every=3)
    rng = np.random.default_rng(0)
    gramians = [gram(rng.standard_normal((2, 4))) for _ in range(4)]
    out, solved = [], []
    for k in gramians:
        out.append(weights_of(method, k))
        solved.append(method.info["solved"])
    assert solved == [True, False, False, True]
    np.testing.assert_array_equal(out[1], out[0])
    np.testing.assert_array_equal(out[2], out[0])
    k3 = gramians[3].numpy()
    np.testing.assert_allclose((k3 @ out[3]) * out[3], 1.0, rtol=1e-8)


def test_warm_start_from_the_previous_solution():
    k = gram(np.random.default_rng(1).standard_normal((5, 8)))
    method = _nash(5, max_norm=0.0)
    weights_of(method, k)
    assert method.info["solver_iterations"] > 0
    weights_of(method, k)
    assert method.info["solver_iterations"] == 0  # the stored α already solves the system


def test_state_dict_round_trip():
    rng = np.random.default_rng(2)
    method = _nash(3, update_weights_every=2)
    for _ in range(3):
        weights_of(method, gram(rng.standard_normal((3, 5))))
    restored = _nash(3, update_weights_every=2)
    restored.load_state_dict(method.state_dict())
    k = gram(rng.standard_normal((3, 5)))
    np.testing.assert_array_equal(weights_of(restored, k), weights_of(method, k))
    assert restored.state.step == method.state.step == 4


@pytest.mark.parametrize("bad", [{"max_norm": -1.0}, {"update_weights_every": 0}, {"max_iter": 0}, {"tol": 0.0}])
def test_bad_hyper_parameters_raise(bad):
    with pytest.raises(ValueError):
        M.create("nashmtl", **bad)
