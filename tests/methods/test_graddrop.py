"""GradDrop (Chen et al., NeurIPS 2020): sign purity, sign-consistent masks, leak, both levels."""

import pytest
import torch
from hypothesis import given, settings

import repmtl
from repmtl.methods.graddrop import GradDrop, positive_sign_purity
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import context
from tests.methods._helpers import torch_jacobians as jacobians


def _direction(method, jac, seed=0, **kw):
    torch.manual_seed(seed)
    return method.aggregate(jac, context(torch.ones(jac.shape[0], dtype=jac.dtype), **kw))


def test_sign_purity_formula():
    jac = torch.tensor([[1.0, -1.0, 2.0, 0.0, -3.0], [3.0, 1.0, -2.0, 0.0, 1.0]])
    expected = torch.tensor([1.0, 0.5, 0.5, 0.5, 0.5 * (1 + (-2.0) / 4.0)])
    torch.testing.assert_close(positive_sign_purity(jac), expected)


def test_hand_case_keeps_the_drawn_sign():
    jac = torch.tensor([[1.0, -1.0, 2.0, 0.0], [3.0, 1.0, -2.0, 0.0]], dtype=torch.float64)
    method = GradDrop().bind(["a", "b"])
    out = _direction(method, jac, seed=3)
    torch.manual_seed(3)
    u = torch.rand(4, dtype=torch.float64)
    # column 0: P = 1, both kept; columns 1-2: P = 1/2, the drawn sign survives; column 3: zero.
    expected = torch.tensor([4.0, 1.0 if 0.5 > u[1] else -1.0, 2.0 if 0.5 > u[2] else -2.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


def test_positive_sign_is_picked_with_probability_p():
    # Column [3, -1]: P = ½(1 + 2/4) = 0.75, so the output is 3 with probability 0.75 and -1 otherwise.
    jac = torch.tensor([[3.0], [-1.0]], dtype=torch.float64).repeat(1, 20000)
    out = _direction(GradDrop().bind(["a", "b"]), jac, seed=0)
    assert set(out.unique().tolist()) == {3.0, -1.0}
    assert abs((out == 3.0).double().mean().item() - 0.75) < 0.015


def test_leak_one_gives_the_plain_sum_and_per_task_leak():
    jac = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]], dtype=torch.float64)
    torch.testing.assert_close(_direction(GradDrop(leak=1.0).bind(["a", "b"]), jac), jac.sum(0))
    out = _direction(GradDrop(leak=[1.0, 0.0]).bind(["a", "b"]), jac, seed=5)
    # task a is always kept; task b only where its sign was drawn
    kept_b = out - jac[0]
    assert all(v in (0.0, w) for v, w in zip(kept_b.tolist(), jac[1].tolist()))


def test_invalid_leak():
    with pytest.raises(ValueError, match="leak"):
        GradDrop(leak=1.5)
    with pytest.raises(ValueError, match="2 tasks"):
        GradDrop(leak=[0.1, 0.2, 0.3]).bind(["a", "b"])


def test_batch_marginalisation_with_sign_correction():
    """Paper's batch rule: purity from Σ_b sign(Z_b) ∘ ∇L_i[b], one mask shared by the batch."""
    z = torch.tensor([[1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)  # B = 2, two entries per sample
    per_sample = torch.tensor(
        [[[1.0, 2.0], [1.0, -1.0]], [[-1.0, 1.0], [-3.0, -3.0]]], dtype=torch.float64
    )  # T × B × 2
    jac = per_sample.reshape(2, -1)
    # corrected: task0 [2, -3], task1 [-4, -4] → P = [1/3, 0]; without the sign(Z) correction
    # column 1 would be [+1, -2] (mixed signs, one task dropped)
    out = _direction(GradDrop().bind(["a", "b"]), jac, seed=11, representation=z)
    torch.manual_seed(11)
    u = torch.rand(2, dtype=torch.float64)
    keep0 = (torch.tensor([1.0, 0.0]) if 1 / 3 > u[0] else torch.tensor([0.0, 1.0])).double()  # col 0: task0 +, task1 −
    keep1 = torch.tensor([1.0, 1.0], dtype=torch.float64)  # col 1: P = 0, both corrected grads negative: kept
    keep = torch.stack([keep0, keep1], dim=1)  # T × 2, shared across the batch
    expected = (per_sample * keep.unsqueeze(1)).sum(0).reshape(-1)
    torch.testing.assert_close(out, expected)


@settings(max_examples=40, deadline=None)
@given(jacobians())
def test_properties_over_random_jacobians(jac):
    method = GradDrop().bind([f"t{i}" for i in range(jac.shape[0])])
    out = _direction(method, jac, seed=1)
    assert torch.isfinite(out).all()
    # every column is either the sum of its positive parts or of its negative parts
    pos, neg = jac.clamp_min(0).sum(0), jac.clamp_max(0).sum(0)
    assert torch.all((out == pos) | (out == neg) | torch.isclose(out, pos) | torch.isclose(out, neg))
    # sign-consistent columns are kept whole
    consistent = (jac >= 0).all(0) | (jac <= 0).all(0)
    torch.testing.assert_close(out[consistent], jac.sum(0)[consistent])
    # permutation invariance with the same uniform draws
    perm = torch.randperm(jac.shape[0], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_direction(method, jac[perm], seed=1), out)
    # exact scale equivariance (no additive epsilon)
    torch.testing.assert_close(_direction(method, 1e-6 * jac, seed=1), 1e-6 * out)


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_backward_updates_every_parameter(level):
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    out, losses = tiny_losses(model, x)
    repmtl.backward(losses, representation=out.representation, method=GradDrop(), level=level)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_leak_one_through_backward_is_equal_weighting(level):
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    _, losses = tiny_losses(model, x)
    sum(losses.values()).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out, losses = tiny_losses(model, x)
    repmtl.backward(losses, representation=out.representation, method=GradDrop(leak=1.0), level=level)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e)
