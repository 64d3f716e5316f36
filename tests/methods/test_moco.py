"""MoCo (Fernando et al., ICLR 2023): tracked gradients, λ on the simplex, both variants."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import repmtl
from repmtl.methods.moco import MoCo, project_to_simplex
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import context
from tests.methods._helpers import task_names as _names
from tests.methods._helpers import torch_jacobians as jacobians


def simplex_by_bisection(v, iters=200):
    """Independent projection: find θ with Σ max(v − θ, 0) = 1 by bisection."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if np.maximum(v - mid, 0).sum() > 1:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - 0.5 * (lo + hi), 0)


def reference_moco(jacs, losses, beta, beta_sigma, gamma, gamma_sigma, rho, projection, normalization):
    tasks, d = jacs[0].shape
    y = np.zeros((tasks, d))
    lam = np.full(tasks, 1.0 / tasks)
    outs = []
    for k, (jac, loss) in enumerate(zip(jacs, losses), start=1):
        h = jac.numpy().copy()
        if normalization == "loss":
            for i in range(tasks):
                n = np.linalg.norm(h[i])
                h[i] = h[i] / n * loss[i] if n > 0 else 0.0
        y = y - beta / k**beta_sigma * (y - h)
        moved = lam - gamma / k**gamma_sigma * (y @ y.T + rho * np.eye(tasks)) @ lam
        if projection == "softmax":
            e = np.exp(moved - moved.max())
            lam = e / e.sum()
        else:
            lam = simplex_by_bisection(moved)
        outs.append(y.T @ lam)
    return outs


def test_first_step_by_hand():
    # y = ½ g; YYᵀ = diag(¼, 1); λ − 0.1·(YYᵀ)λ = [0.4875, 0.45]; update = Yᵀ softmax(·)
    jac = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    method = MoCo(gradient_normalization="none").bind(["a", "b"])
    out = method.aggregate(jac, context(torch.ones(2, dtype=torch.float64)))
    lam = torch.softmax(torch.tensor([0.4875, 0.45], dtype=torch.float64), 0)
    torch.testing.assert_close(method.state.lambd, lam)
    torch.testing.assert_close(out, torch.tensor([0.5 * lam[0], lam[1]], dtype=torch.float64))


@pytest.mark.parametrize("projection, normalization", [("softmax", "loss"), ("simplex", "none"), ("simplex", "loss")])
def test_matches_reference_over_steps(projection, normalization):
    gen = torch.Generator().manual_seed(0)
    jacs = [torch.randn(3, 6, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [3.0], [0.2]]) for _ in range(5)]
    losses = [torch.rand(3, generator=gen, dtype=torch.float64) + 0.5 for _ in range(5)]
    method = MoCo(beta=0.5, beta_sigma=0.5, gamma=2.0, gamma_sigma=0.5, rho=0.1, projection=projection,
                  gradient_normalization=normalization).bind(_names(3))
    expected = reference_moco(jacs, [loss.numpy() for loss in losses], 0.5, 0.5, 2.0, 0.5, 0.1, projection, normalization)
    for jac, loss, e in zip(jacs, losses, expected):
        out = method.aggregate(jac, context(loss))
        np.testing.assert_allclose(out.numpy(), e, rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8))
def test_simplex_projection_matches_bisection(values):
    v = np.array(values)
    out = project_to_simplex(torch.tensor(v)).numpy()
    assert out.min() >= 0 and abs(out.sum() - 1) < 1e-9
    np.testing.assert_allclose(out, simplex_by_bisection(v), atol=1e-7)


def test_simplex_projection_of_non_finite_input_is_uniform():
    out = project_to_simplex(torch.tensor([float("nan"), 1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(out, torch.full((3,), 1 / 3, dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(jacobians(), st.sampled_from(["softmax", "simplex"]), st.sampled_from(["loss", "none"]))
def test_properties_over_random_jacobians(jac, projection, normalization):
    tasks = jac.shape[0]
    losses = torch.linspace(0.5, 2.0, tasks, dtype=torch.float64)
    a = MoCo(projection=projection, gradient_normalization=normalization).bind(_names(tasks))
    b = MoCo(projection=projection, gradient_normalization=normalization).bind(_names(tasks))
    perm = torch.arange(tasks - 1, -1, -1)
    for _ in range(3):
        out = a.aggregate(jac, context(losses))
        assert torch.isfinite(out).all()
        assert torch.isfinite(a.state.lambd).all() and abs(a.state.lambd.sum().item() - 1) < 1e-9 and (a.state.lambd >= 0).all()
        # permutation equivariance: same update, permuted λ
        torch.testing.assert_close(b.aggregate(jac[perm], context(losses[perm])), out, atol=1e-12 * max(1.0, jac.abs().max().item()), rtol=1e-9)
        # λ itself is equivariant up to how ties between identical tasks are split (summation
        # order differs after the permutation): compare the total λ of each group of equal rows
        groups = torch.tensor([min(j for j in range(tasks) if torch.equal(jac[j], jac[i])) for i in range(tasks)])
        total_a = torch.zeros(tasks, dtype=a.state.lambd.dtype).index_add_(0, groups, a.state.lambd)
        total_b = torch.zeros(tasks, dtype=b.state.lambd.dtype).index_add_(0, groups[perm], b.state.lambd)
        torch.testing.assert_close(total_b, total_a)


def test_state_round_trip():
    gen = torch.Generator().manual_seed(1)
    jacs = [torch.randn(2, 5, generator=gen, dtype=torch.float64) for _ in range(4)]
    first = MoCo().bind(["a", "b"])
    for jac in jacs[:3]:
        first.aggregate(jac, context(torch.ones(2, dtype=torch.float64)))
    saved = copy.deepcopy(first.state_dict())
    resumed = MoCo().bind(["a", "b"])
    resumed.load_state_dict(saved)
    out = first.aggregate(jacs[3], context(torch.ones(2, dtype=torch.float64)))
    torch.testing.assert_close(resumed.aggregate(jacs[3], context(torch.ones(2, dtype=torch.float64))), out, rtol=0, atol=0)
    assert not torch.allclose(MoCo().bind(["a", "b"]).aggregate(jacs[3], context(torch.ones(2, dtype=torch.float64))), out)


def test_representation_level_is_refused_and_parameter_level_updates_everything():
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    out, losses = tiny_losses(model, x)
    with pytest.raises(ValueError, match="undefined at level 'representation'"):
        repmtl.backward(losses, representation=out.representation, method=MoCo(), level="representation")
    method = MoCo()
    for _ in range(2):
        model.zero_grad()
        out, losses = tiny_losses(model, x)
        repmtl.backward(losses, representation=out.representation, method=method, level="parameters")
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_loss_normalisation_uses_the_loss_magnitude():
    """A log-transformed loss can be negative; it must not flip the task's gradient."""
    jac = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    a = MoCo().bind(["a", "b"]).aggregate(jac, context(torch.tensor([-0.5, -2.0], dtype=torch.float64)))
    b = MoCo().bind(["a", "b"]).aggregate(jac, context(torch.tensor([0.5, 2.0], dtype=torch.float64)))
    torch.testing.assert_close(a, b)
    assert (a >= 0).all()
