"""CAGrad: maximise the worst task improvement in a ball around the mean gradient."""

import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize

from repmtl import methods as M
from tests.methods._helpers import PROPERTY, jacobians, weights_of


def _direction(jac, alpha, c, rescale=1):
    """Undo the official ``T`` factor and the rescaling: the paper's ``d``."""
    factor = (1.0, 1.0 + c**2, 1.0 + c)[rescale]
    return jac.T @ alpha * factor / jac.shape[0]


def test_orthogonal_unit_gradients():
    # symmetric optimum w = (1/2, 1/2): g_w = g0, d = (1 + c) g0; official T factor and /(1 + c²)
    jac = np.eye(2)
    np.testing.assert_allclose(weights_of("cagrad", jac), [1.2, 1.2], atol=1e-7)  # 2·0.75/1.25
    np.testing.assert_allclose(weights_of("cagrad", jac, rescale=0), [1.5, 1.5], atol=1e-7)
    np.testing.assert_allclose(weights_of("cagrad", jac, rescale=2), [1.0, 1.0], atol=1e-7)


def test_c_zero_is_equal_weighting():
    jac = np.array([[1.0, 0.0], [-3.0, 1.0], [0.5, 0.2]])
    np.testing.assert_allclose(weights_of("cagrad", jac, c=0.0), [1.0, 1.0, 1.0])


def test_cancelling_tasks_give_the_mean_gradient():
    jac = np.array([[1.0, 2.0], [-1.0, -2.0]])
    np.testing.assert_allclose(weights_of("cagrad", jac), [0.8, 0.8])  # 1/(1 + 0.25)


def _certified_gap(jac, c, tol=1e-6):
    """The duality gap CAGrad certifies (its ``tol`` relative to ``‖g0‖(‖g0‖ + c)`` in units of the
    largest squared gradient norm), in the units of ``jac``, plus the scan's resolution."""
    top = np.linalg.norm(jac, axis=1).max()
    g0 = np.linalg.norm(jac.mean(axis=0))
    return tol * g0 * (g0 + c * top) + 1e-9 * top * g0


def _best_on_circle(jac, center, radius):
    """max over the circle of min_t g_tᵀd: a coarse scan, then a fine scan around each peak."""

    def values(theta):
        ring = center + radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)
        return np.min(ring @ jac.T, axis=1)

    coarse = np.linspace(0, 2 * np.pi, 20_000, endpoint=False)
    step = coarse[1] - coarse[0]
    v = values(coarse)
    peaks = np.flatnonzero((v >= np.roll(v, 1)) & (v >= np.roll(v, -1)))  # every local maximum
    fine = [np.max(values(np.linspace(t - 2 * step, t + 2 * step, 40_001))) for t in coarse[peaks]]
    return float(max(fine))


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.2, 0.5, 0.9]))
def test_two_tasks_match_a_brute_force_search_of_the_ball(seed, c):
    """T = 2 in the plane: the optimum lies on the ball's boundary; scan it finely."""
    rng = np.random.default_rng(seed)
    jac = rng.standard_normal((2, 2)) * 10 ** rng.uniform(-3, 3, size=(2, 1))
    d = _direction(jac, weights_of("cagrad", jac, c=c), c)
    g0 = jac.mean(axis=0)
    radius = c * np.linalg.norm(g0)
    assert np.linalg.norm(d - g0) <= radius * (1 + 1e-9) + 1e-15
    best = _best_on_circle(jac, g0, radius)
    assert np.min(jac @ d) >= best - _certified_gap(jac, c)


def _primal_value(jac, c):
    """An independent solve of the primal ``max_{d = Jᵀβ, ‖d−g0‖ ≤ r} min_t g_tᵀd`` (SLSQP on
    the primal, in the row space, gradients scaled to unit largest norm): the value of a feasible
    point, so a lower bound on the optimum that is tight when SLSQP converges."""
    jac = jac / np.linalg.norm(jac, axis=1).max()
    t_count = jac.shape[0]
    g0 = jac.mean(axis=0)
    radius = c * np.linalg.norm(g0)
    x0 = np.concatenate([np.full(t_count, 1.0 / t_count), [np.min(jac @ g0)]])
    cons = [
        {"type": "ineq", "fun": lambda x: jac @ (jac.T @ x[:-1]) - x[-1]},
        {"type": "ineq", "fun": lambda x: radius**2 - np.sum((jac.T @ x[:-1] - g0) ** 2)},
    ]
    res = minimize(lambda x: -x[-1], x0, constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    d = jac.T @ res.x[:-1]
    offset = np.linalg.norm(d - g0)
    if offset > radius:  # pull a slightly infeasible solution back into the ball: a true lower bound
        d = g0 + (d - g0) * (radius / offset)
    return float(np.min(jac @ d)), jac


@PROPERTY
@given(jacobians(min_tasks=2, max_tasks=6, max_dim=8, full_row_rank=True), st.sampled_from([0.3, 0.5, 0.8]))
def test_matches_an_independent_primal_solve(jac, c):
    method = M.create("cagrad", c=c, tasks=[str(i) for i in range(jac.shape[0])])
    alpha = weights_of(method, jac)
    assert not method.info.get("fallback")
    value, unit_jac = _primal_value(jac, c)
    d = _direction(unit_jac, alpha, c)
    g0 = unit_jac.mean(axis=0)
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-7) + 1e-12
    assert np.min(unit_jac @ d) >= value - _certified_gap(unit_jac, c) - 1e-9


@PROPERTY
@given(jacobians(max_tasks=12))
def test_update_is_feasible_and_weights_finite(jac):
    c = 0.5
    alpha = weights_of("cagrad", jac, c=c)
    assert np.all(np.isfinite(alpha))
    d = _direction(jac, alpha, c)
    g0 = jac.mean(axis=0)
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-6) + 1e-12 * np.abs(jac).max()


def test_unconverged_solver_falls_back_to_the_mean_gradient(caplog):
    jac = np.array([[1.0, 0.0, 0.0], [-0.9, 1.0, 0.0], [0.3, -0.8, 1.0]])
    method = M.create("cagrad", max_iter=1, tasks=["a", "b", "c"])
    with caplog.at_level(logging.WARNING):
        alpha = weights_of(method, jac)
    assert method.info["fallback"] is True
    np.testing.assert_allclose(alpha, np.full(3, 1 / 1.25))
    assert "cagrad" in caplog.text
    converged = M.create("cagrad", tasks=["a", "b", "c"])
    weights_of(converged, jac)
    assert converged.info["fallback"] is False


def test_max_norm_clips_the_update():
    jac = np.array([[30.0, 0.0], [0.0, 40.0]])
    alpha = weights_of("cagrad", jac, max_norm=1.0)
    assert np.linalg.norm(jac.T @ alpha) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [{"c": -0.1}, {"c": float("nan")}, {"rescale": 3}, {"max_norm": -1.0}, {"tol": 0.0}])
def test_bad_hyper_parameters_raise(bad):
    with pytest.raises(ValueError):
        M.create("cagrad", **bad)
