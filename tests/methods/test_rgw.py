"""RGW (Lin et al., TMLR 2022; Mao et al., IEEE Access 2024, §II-A): random softmax weights on the
shared update only."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import repmtl
from repmtl.methods.rgw import RandomGradientWeighting
from tests.conftest import tiny_losses, tiny_model


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1), st.sampled_from([1e-8, 1.0, 1e8]))
def test_weights_are_softmax_of_a_standard_normal_draw(tasks, seed, scale):
    method = RandomGradientWeighting().bind([f"t{i}" for i in range(tasks)])
    torch.manual_seed(seed)
    w = method.weights(torch.full((tasks,), scale, dtype=torch.float64)).shared
    torch.manual_seed(seed)
    torch.testing.assert_close(w, torch.softmax(torch.randn(tasks, dtype=torch.float64), 0))
    assert torch.isfinite(w).all() and (w > 0).all() and abs(w.sum().item() - 1) < 1e-12


def test_weights_change_between_steps_and_ignore_the_losses():
    method = RandomGradientWeighting().bind(["a", "b"])
    torch.manual_seed(0)
    first = method.weights(torch.ones(2)).shared
    second = method.weights(torch.ones(2)).shared
    assert not torch.allclose(first, second)
    torch.manual_seed(0)
    torch.testing.assert_close(method.weights(torch.tensor([5.0, 0.1])).shared, first)


def _per_task(model, x):
    out = {}
    for t in model.task_names:
        model.zero_grad()
        _, losses = tiny_losses(model, x)
        losses[t].backward()
        out[t] = ([p.grad.clone() for p in model.shared_parameters()], [p.grad.clone() for p in model.task_parameters(t)])
    model.zero_grad()
    return out


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_backward_weights_only_the_shared_update(level):
    """Shared grads = Σ α_t g_t (per-task autograd reference), heads get plain task gradients, the
    same at both levels (the surrogate is exact for a linear combination)."""
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    ref = _per_task(model, x)
    out, losses = tiny_losses(model, x)
    torch.manual_seed(123)
    record = repmtl.backward(losses, representation=out.representation, method="rgw", level=level)
    torch.manual_seed(123)
    alpha = torch.softmax(torch.randn(2, dtype=torch.float64), 0)
    torch.testing.assert_close(record.weights, alpha)
    torch.testing.assert_close(record.head_weights, torch.ones(2, dtype=torch.float64))
    expected = [alpha[0] * a + alpha[1] * b for a, b in zip(ref["t0"][0], ref["t1"][0])]
    for p, e in zip(model.shared_parameters(), expected):
        torch.testing.assert_close(p.grad, e)
    for t in model.task_names:
        for p, e in zip(model.task_parameters(t), ref[t][1]):
            torch.testing.assert_close(p.grad, e)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_missing_representation_is_a_clear_error():
    torch.manual_seed(1)
    model = tiny_model()
    _, losses = tiny_losses(model, torch.randn(4, 1, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="representation"):
        repmtl.backward(losses, representation=None, method="rgw")
