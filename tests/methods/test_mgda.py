"""MGDA (existing method): the min-norm point of the convex hull of the task gradients.

The default solver is exact (one NNLS solve); the pairwise Frank-Wolfe option is not accurate
on ill-conditioned or Pareto-stationary problems (it stops at ``max_iter`` with KKT gaps up to
~1e-4 of the largest squared gradient norm), which ``test_frank_wolfe_option_stalls`` pins.
"""

import numpy as np
import pytest
from hypothesis import given, settings

from repmtl import methods as M
from repmtl.methods._gramian import min_norm_weights_exact
from repmtl.methods._minnorm import min_norm_weights
from tests.methods._helpers import PROPERTY, jacobians, unit_gramian, weights_of


@pytest.mark.parametrize(
    ("jac", "expected"),
    [
        ([[1.0, 0.0], [0.0, 1.0]], [0.5, 0.5]),
        # min over a of 4a² + (1-a)²: a = 0.2
        ([[2.0, 0.0], [0.0, 1.0]], [0.2, 0.8]),
        # g2 = 3 g1: the hull's min-norm point is g1 itself
        ([[1.0, 0.0], [3.0, 0.0]], [1.0, 0.0]),
        # three tasks, the third one dominated by the first two's midpoint
        ([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]], [0.5, 0.5, 0.0]),
        ([[3.0, 4.0]], [1.0]),
    ],
)
def test_hand_cases(jac, expected):
    np.testing.assert_allclose(weights_of("mgda", np.array(jac)), expected, atol=1e-9)
    np.testing.assert_allclose(min_norm_weights_exact(unit_gramian(np.array(jac))), expected, atol=1e-9)


def test_l2_normalization_maps_weights_back():
    # unit gradients e1, e2 -> beta = (1/2, 1/2); alpha = beta / norms = (1/4, 1/2), d = (1/2, 1/2)
    alpha = weights_of("mgda", np.array([[2.0, 0.0], [0.0, 1.0]]), normalization="l2")
    np.testing.assert_allclose(alpha, [0.25, 0.5], atol=1e-9)


def _assert_kkt(k, alpha, tol=1e-8):
    """KKT of ``min αᵀKα`` over the simplex: ``(Kα)_t ≥ αᵀKα`` for all t, equality on the support."""
    assert np.all(alpha >= 0) and np.isclose(alpha.sum(), 1.0)
    kalpha, value = k @ alpha, alpha @ k @ alpha
    assert np.all(kalpha >= value - tol)
    support = alpha > 1e-6
    np.testing.assert_allclose(kalpha[support], value, atol=tol)


@PROPERTY
@given(jacobians(max_tasks=10))
def test_reported_convergence_is_a_kkt_certificate(jac):
    """Whenever the solver says it converged, ``Jᵀα`` is the hull's min-norm point and does not
    conflict with any task; otherwise it must say so (``info["solver_converged"] = False``)."""
    method = M.create("mgda", tasks=[str(i) for i in range(jac.shape[0])])
    alpha = weights_of(method, jac)
    if method.info["solver_converged"]:
        _assert_kkt(unit_gramian(jac), alpha)
        assert np.all(unit_gramian(jac) @ alpha >= -1e-8)


@PROPERTY
@given(jacobians(max_tasks=12))
def test_exact_nnls_solver_satisfies_kkt(jac):
    """The solver proposed for ``_minnorm`` (used by UPGrad's fallback): exact on every input."""
    _assert_kkt(unit_gramian(jac), min_norm_weights_exact(jac @ jac.T))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(jacobians(max_tasks=10))
def test_kkt_of_the_min_norm_problem(jac):
    _assert_kkt(unit_gramian(jac), weights_of("mgda", jac))


def test_frank_wolfe_option_stalls_where_the_exact_solver_does_not():
    jac = np.array([[1.2573e-9, -1.3210e-9], [0.0, 0.0], [-5.3567e-9, 3.6160e-9]])
    result = min_norm_weights(jac @ jac.T, solver="frank-wolfe")
    assert not result.converged and result.iterations == 250
    assert min_norm_weights(jac @ jac.T).converged


def test_zero_gradient_task_with_nearly_opposite_gradients():
    # 0 is in the hull (task 1 has a zero gradient), so the answer is alpha = e_1; the solver
    # zig-zags between tasks 0 and 2 and stops after 250 iterations with |d|² ≈ 2e-6 |g|².
    jac = np.array([[1.2573e-9, -1.3210e-9], [0.0, 0.0], [-5.3567e-9, 3.6160e-9]])
    np.testing.assert_allclose(weights_of("mgda", jac), [0.0, 1.0, 0.0], atol=1e-8)
