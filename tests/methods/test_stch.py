"""STCH (Lin et al., ICML 2024): warm-up, nadir from the accumulation epoch, smooth Tchebycheff weights."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import repmtl
from repmtl.methods.stch import STCH
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import assert_log_loss_weights_equivariant


def _log(values):
    return torch.log(torch.tensor(values, dtype=torch.float64))


def test_schedule_and_nadir():
    method = STCH(mu=0.5, warmup_epochs=2).bind(["a", "b"])
    for epoch in range(2):  # warm-up: log-loss equal weighting, nothing recorded
        torch.testing.assert_close(method.weights(_log([5.0, 1.0])), torch.ones(2, dtype=torch.float64))
        assert method.info["phase"] == "warmup"
        method.end_epoch()
    for values in ([2.0, 1.0], [4.0, 3.0]):  # accumulation epoch: still w = 1
        torch.testing.assert_close(method.weights(_log(values)), torch.ones(2, dtype=torch.float64))
        assert method.info["phase"] == "nadir"
    method.end_epoch()
    torch.testing.assert_close(method.state.log_nadir, _log([3.0, 2.0]))
    w = method.weights(_log([1.5, 3.0]))  # relative log losses: log ½, log 3/2
    expected = 2 * torch.softmax(torch.tensor([torch.log(torch.tensor(0.5)), torch.log(torch.tensor(1.5))], dtype=torch.float64) / 0.5, 0)
    torch.testing.assert_close(w, expected)
    assert method.info["phase"] == "stch"


def test_weights_are_the_gradient_of_the_official_objective():
    """T μ logsumexp(log(L/n)/μ) differentiated by autograd: ∂/∂L_t = w_t / L_t."""
    losses = torch.tensor([0.4, 2.0, 7.0], dtype=torch.float64, requires_grad=True)
    nadir = [1.0, 1.5, 3.0]
    mu = 0.3
    method = STCH(mu=mu, nadir=nadir).bind(["a", "b", "c"])
    w = method.weights(torch.log(losses.detach()))
    objective = 3 * mu * torch.logsumexp(torch.log(losses / torch.tensor(nadir, dtype=torch.float64)) / mu, 0)
    (grad,) = torch.autograd.grad(objective, losses)
    torch.testing.assert_close(w / losses.detach(), grad)


def test_small_mu_focuses_on_the_worst_task():
    method = STCH(mu=1e-3, nadir=[1.0, 1.0, 1.0]).bind(["a", "b", "c"])
    w = method.weights(_log([1.0, 1.2, 0.9]))
    torch.testing.assert_close(w, torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)
    big = STCH(mu=1e6, nadir=[1.0, 1.0, 1.0]).bind(["a", "b", "c"]).weights(_log([1.0, 1.2, 0.9]))
    torch.testing.assert_close(big, torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)


def test_validation():
    with pytest.raises(ValueError, match="mu"):
        STCH(mu=0.0)
    with pytest.raises(ValueError, match="nadir"):
        STCH(nadir=[1.0, -1.0])
    with pytest.raises(ValueError, match="2 values for 3 tasks"):
        STCH(nadir=[1.0, 1.0]).bind(["a", "b", "c"])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31 - 1), st.sampled_from([1e-8, 1.0, 1e8]), st.floats(0.01, 10.0))
def test_finite_and_permutation_equivariant(tasks, seed, scale, mu):
    a, _ = assert_log_loss_weights_equivariant(lambda names: STCH(mu=mu, warmup_epochs=0).bind(names), tasks, seed, scale)
    assert a.state.has_nadir


def test_state_round_trip_in_the_middle_of_the_nadir_epoch():
    first = STCH(warmup_epochs=1).bind(["a", "b"])
    first.weights(_log([1.0, 1.0]))
    first.end_epoch()
    first.weights(_log([2.0, 6.0]))  # half of the accumulation epoch
    saved = copy.deepcopy(first.state_dict())
    resumed = STCH(warmup_epochs=1).bind(["a", "b"])
    resumed.load_state_dict(saved)
    fresh = STCH(warmup_epochs=1).bind(["a", "b"])
    for m in (first, resumed, fresh):
        m.weights(_log([4.0, 2.0]))
        m.end_epoch()
    torch.testing.assert_close(resumed.state.log_nadir, first.state.log_nadir, rtol=0, atol=0)
    torch.testing.assert_close(resumed.state.log_nadir, _log([3.0, 4.0]))
    out = first.weights(_log([1.0, 1.0]))
    torch.testing.assert_close(resumed.weights(_log([1.0, 1.0])), out, rtol=0, atol=0)
    assert fresh.state.epoch == 1 and not fresh.state.has_nadir  # a fresh instance is still warming up: the test can fail


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_backward_updates_every_parameter(level):
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    method = STCH(nadir=[0.5, 2.0])
    out, losses = tiny_losses(model, x)
    record = repmtl.backward(losses, representation=out.representation, method=method, level=level)
    raw = record.losses
    expected = 2 * torch.softmax(torch.log(raw + 1e-8) - torch.log(torch.tensor([0.5, 2.0], dtype=torch.float64)), 0)
    torch.testing.assert_close(record.weights, expected)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
