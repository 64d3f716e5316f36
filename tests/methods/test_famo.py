"""FAMO (Liu et al., NeurIPS 2023): weights z/c on log losses, logits learned from loss changes."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import repmtl
from repmtl.methods.famo import FAMO
from tests.conftest import tiny_losses, tiny_model


def _names(n):
    return [f"t{i}" for i in range(n)]


def test_first_step_weights_by_hand():
    # z = ½, c = ½(1/1 + 1/4) = 0.625 → weights z/c = 0.8 on each log loss
    out = FAMO().bind(["a", "b"]).weights(torch.log(torch.tensor([1.0, 4.0], dtype=torch.float64)))
    torch.testing.assert_close(out, torch.tensor([0.8, 0.8], dtype=torch.float64))


def test_weighted_log_gradient_equals_the_official_objective():
    """Σ w_t ∇log L_t with w = z/c equals ∇ of the official Σ (z_t / c) log L_t, c = Σ z/L."""
    losses = torch.tensor([0.3, 2.0, 5.0], dtype=torch.float64, requires_grad=True)
    logits = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64)
    method = FAMO().bind(_names(3))
    method.state.logits = logits.clone()
    w = method.weights(torch.log(losses.detach()))
    z = torch.softmax(logits, 0)
    c = (z / losses.detach()).sum()
    (grad,) = torch.autograd.grad((z / c * torch.log(losses)).sum(), losses)
    torch.testing.assert_close(w / losses.detach(), grad)


@pytest.mark.parametrize("gamma", [0.0, 1e-3])
def test_logit_updates_match_torch_adam(gamma):
    sequence = [torch.tensor(v, dtype=torch.float64) for v in ([2.0, 1.0, 3.0], [1.5, 0.9, 2.9], [1.0, 0.85, 2.5], [0.9, 0.5, 2.4])]
    method = FAMO(w_lr=0.025, gamma=gamma).bind(_names(3))
    xi = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([xi], lr=0.025, weight_decay=gamma)
    previous = None
    for losses in sequence:
        w = method.weights(torch.log(losses))
        if previous is not None:
            delta = torch.log(previous) - torch.log(losses)
            (xi.grad,) = torch.autograd.grad(torch.softmax(xi, 0), xi, grad_outputs=delta)
            adam.step()
        torch.testing.assert_close(method.state.logits, xi.detach())
        z = torch.softmax(xi.detach(), 0)
        torch.testing.assert_close(w, z / (z / losses).sum())
        previous = losses


def test_sgd_variant_is_algorithm_one():
    method = FAMO(w_lr=0.5, gamma=0.1, optimizer="sgd").bind(["a", "b"])
    method.weights(torch.log(torch.tensor([1.0, 1.0], dtype=torch.float64)))
    method.weights(torch.log(torch.tensor([0.5, 1.0], dtype=torch.float64)))
    delta = torch.tensor([math.log(2.0), 0.0], dtype=torch.float64)
    z = torch.tensor([0.5, 0.5], dtype=torch.float64)
    grad = z * (delta - (z * delta).sum())  # ξ = 0, so no decay term yet
    torch.testing.assert_close(method.state.logits, -0.5 * grad)


def test_the_task_that_improved_less_gains_weight():
    method = FAMO(w_lr=0.1).bind(["fast", "slow"])
    losses = torch.tensor([1.0, 1.0], dtype=torch.float64)
    for _ in range(10):
        method.weights(torch.log(losses))
        losses = losses * torch.tensor([0.8, 0.99], dtype=torch.float64)
    z = torch.softmax(method.state.logits, 0)
    assert z[1] > 0.6 > z[0]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(0, 2**31 - 1),
    st.sampled_from([1e-8, 1.0, 1e8]),
    st.sampled_from(["adam", "sgd"]),
)
def test_finite_and_permutation_equivariant(tasks, seed, scale, optimizer):
    gen = torch.Generator().manual_seed(seed)
    a, b = FAMO(optimizer=optimizer).bind(_names(tasks)), FAMO(optimizer=optimizer).bind(_names(tasks))
    perm = torch.arange(tasks - 1, -1, -1)
    for _ in range(4):
        losses = (torch.rand(tasks, generator=gen, dtype=torch.float64) + 1e-3) * scale
        if tasks > 1:
            losses[-1] = losses[0]  # duplicate tasks
        log_losses = torch.log(losses)
        w = a.weights(log_losses)
        assert torch.isfinite(w).all() and (w > 0).all()
        torch.testing.assert_close(b.weights(log_losses[perm]), w[perm])


def test_state_round_trip():
    sequence = [torch.log(torch.tensor(v, dtype=torch.float64)) for v in ([2.0, 1.0], [1.0, 0.9], [0.7, 0.8], [0.5, 0.75])]
    first = FAMO().bind(["a", "b"])
    for losses in sequence[:3]:
        first.weights(losses)
    saved = copy.deepcopy(first.state_dict())
    resumed = FAMO().bind(["a", "b"])
    resumed.load_state_dict(saved)
    out = first.weights(sequence[3])
    torch.testing.assert_close(resumed.weights(sequence[3]), out, rtol=0, atol=0)
    torch.testing.assert_close(resumed.state.logits, first.state.logits, rtol=0, atol=0)
    assert not torch.allclose(FAMO().bind(["a", "b"]).weights(sequence[3]), out)


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_backward_updates_every_parameter_with_its_weights(level):
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    method = FAMO()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        model.zero_grad()
        out, losses = tiny_losses(model, x)
        record = repmtl.backward(losses, representation=out.representation, method=method, level=level)
        sgd.step()  # the losses change, so the logits learn
    assert method.state.has_previous and method.state.logits.abs().sum() > 0
    torch.testing.assert_close(record.head_weights, record.weights)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
