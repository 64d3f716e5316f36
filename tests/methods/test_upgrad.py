"""UPGrad: mean of the task gradients projected onto the dual cone {v : Jv ≥ 0}."""

import logging

import numpy as np
import pytest
from hypothesis import given
from scipy.optimize import minimize

from repmtl import methods as M
from repmtl.methods import upgrad as upgrad_module
from tests.methods._helpers import PROPERTY, jacobians, unit_gramian, weights_of


def test_hand_case():
    # g1 = (1,0), g2 = (-1,1) conflict. π(g1) = g1 + g2/2 = (1/2, 1/2); π(g2) = g2 + g1 = (0, 1).
    # mean = (1/4, 3/4) = 1·g1 + 3/4·g2
    np.testing.assert_allclose(weights_of("upgrad", np.array([[1.0, 0.0], [-1.0, 1.0]])), [1.0, 0.75], atol=1e-12)


def test_non_conflicting_gradients_give_their_mean():
    jac = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    np.testing.assert_allclose(weights_of("upgrad", jac), np.full(3, 1 / 3), atol=1e-12)


def test_preference_vector_weights_the_projections():
    jac = np.array([[1.0, 0.0], [-1.0, 1.0]])
    # p = (1, 0): only π(g1) = g1 + g2/2 counts
    np.testing.assert_allclose(weights_of("upgrad", jac, pref_vector=[1.0, 0.0]), [1.0, 0.5], atol=1e-12)
    with pytest.raises(ValueError, match="entries"):
        M.create("upgrad", pref_vector=[1.0, 2.0, 3.0], tasks=["a", "b"])


@PROPERTY
@given(jacobians(max_tasks=16))
def test_update_never_conflicts_with_any_task(jac):
    method = M.create("upgrad", tasks=[str(i) for i in range(jac.shape[0])])
    alpha = weights_of(method, jac)
    assert method.info["fallback"] is False
    k = unit_gramian(jac)
    norms = np.sqrt(np.diag(k))
    # g_tᵀd ≥ 0 up to the rounding of the sum Σ_s K_ts α_s (which matters when d ≈ 0, e.g. for
    # collinear gradients of mixed sign, whose dual cone is {0})
    rounding = np.abs(k) @ np.abs(alpha)
    assert np.all(k @ alpha >= -1e-9 * (norms * np.sqrt(max(alpha @ k @ alpha, 0.0)) + rounding))


def _projection_primal(jac, i):
    """An independent primal solve: argmin ‖v − g_i‖² s.t. J v ≥ 0 (SLSQP in R^d)."""
    g = jac[i]
    res = minimize(
        lambda v: 0.5 * np.sum((v - g) ** 2),
        g.copy(),
        jac=lambda v: v - g,
        constraints=[{"type": "ineq", "fun": lambda v: jac @ v, "jac": lambda v: jac}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )
    return res.x


@PROPERTY
@given(jacobians(max_tasks=5, max_dim=6, structure=False))
def test_matches_an_independent_primal_projection(jac):
    jac = jac / np.linalg.norm(jac, axis=1).max()
    expected = np.mean([_projection_primal(jac, i) for i in range(jac.shape[0])], axis=0)
    np.testing.assert_allclose(jac.T @ weights_of("upgrad", jac), expected, atol=1e-6)


def test_failed_projection_falls_back_to_mgda(monkeypatch, caplog):
    monkeypatch.setattr(upgrad_module, "upgrad_weights", lambda k, pref, reg_eps: None)
    jac = np.array([[1.0, 0.0], [0.0, 2.0]])
    method = M.create("upgrad", tasks=["a", "b"])
    with caplog.at_level(logging.WARNING):
        alpha = weights_of(method, jac)
    np.testing.assert_allclose(alpha, [0.8, 0.2], atol=1e-12)  # MGDA: min (a, 2(1-a))
    assert method.info["fallback"] is True and "upgrad" in caplog.text


@pytest.mark.parametrize("bad", [{"pref_vector": [1.0, -1.0]}, {"pref_vector": [0.0, 0.0]}, {"reg_eps": -1.0}])
def test_bad_hyper_parameters_raise(bad):
    with pytest.raises(ValueError):
        M.create("upgrad", **bad)
