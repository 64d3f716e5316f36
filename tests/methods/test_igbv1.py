"""IGBv1 (Dai et al., UAI 2023): base losses from epoch base_epoch, weights T·softmax(L/L_base)."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import repmtl
from repmtl.methods.igbv1 import IGBv1
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import assert_log_loss_weights_equivariant


def _log(values):
    return torch.log(torch.tensor(values, dtype=torch.float64))


def test_schedule_and_formula():
    method = IGBv1(base_epoch=1).bind(["a", "b"])
    torch.testing.assert_close(method.weights(_log([9.0, 9.0])), torch.ones(2, dtype=torch.float64))
    method.end_epoch()  # epoch 0 is not the base epoch
    for values in ([2.0, 1.0], [4.0, 3.0]):
        torch.testing.assert_close(method.weights(_log(values)), torch.ones(2, dtype=torch.float64))
    method.end_epoch()
    torch.testing.assert_close(method.state.base_losses, torch.tensor([3.0, 2.0], dtype=torch.float64))
    w = method.weights(_log([1.5, 2.0]))  # L / L_base = [0.5, 1.0]
    torch.testing.assert_close(w, 2 * torch.softmax(torch.tensor([0.5, 1.0], dtype=torch.float64), 0))
    assert w[1] > w[0]  # the task with the larger remaining gap gets more weight


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31 - 1), st.sampled_from([1e-8, 1.0, 1e8]))
def test_finite_and_permutation_equivariant(tasks, seed, scale):
    a, _ = assert_log_loss_weights_equivariant(lambda names: IGBv1(base_epoch=0).bind(names), tasks, seed, scale)
    assert a.state.has_base


def test_state_round_trip_during_the_base_epoch():
    first = IGBv1(base_epoch=0).bind(["a", "b"])
    first.weights(_log([2.0, 4.0]))
    saved = copy.deepcopy(first.state_dict())
    resumed = IGBv1(base_epoch=0).bind(["a", "b"])
    resumed.load_state_dict(saved)
    fresh = IGBv1(base_epoch=0).bind(["a", "b"])
    for m in (first, resumed, fresh):
        m.weights(_log([4.0, 2.0]))
        m.end_epoch()
    out = first.weights(_log([1.0, 1.0]))
    torch.testing.assert_close(resumed.weights(_log([1.0, 1.0])), out, rtol=0, atol=0)
    assert not torch.allclose(fresh.weights(_log([1.0, 1.0])), out)


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_backward_weights_the_log_losses_of_heads_and_encoder(level):
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    heads = {}
    for t in model.task_names:
        model.zero_grad()
        _, losses = tiny_losses(model, x)
        losses[t].backward()
        heads[t] = [p.grad.clone() for p in model.task_parameters(t)]
    method = IGBv1(base_epoch=0)
    model.zero_grad()
    out, losses = tiny_losses(model, x)
    repmtl.backward(losses, representation=out.representation, method=method, level=level, eps=0.0)
    method.end_epoch()
    model.zero_grad()
    out, losses = tiny_losses(model, x)
    record = repmtl.backward(losses, representation=out.representation, method=method, level=level, eps=0.0)
    # same batch, so L / L_base = 1 for every task: w = 1, and each head gets ∇L_t / L_t
    torch.testing.assert_close(record.weights, torch.ones(2, dtype=torch.float64))
    for i, t in enumerate(model.task_names):
        for p, e in zip(model.task_parameters(t), heads[t]):
            torch.testing.assert_close(p.grad, e / record.losses[i])
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
