"""GradNorm: learned weights, L_grad = Σ|w_t‖g_t‖ − Ḡ r_t^α|, renormalised to sum T."""

import numpy as np
import pytest
import torch

import repmtl
from repmtl import methods as M
from tests.conftest import tiny_losses, tiny_model


def _gradnorm(num_tasks=2, **hparams):
    return M.create("gradnorm", tasks=[f"t{i}" for i in range(num_tasks)], **hparams)


def _grad_of_w(method, k, losses):
    method.loss_weights.grad = None
    method.weights(torch.tensor(k, dtype=torch.float64), torch.tensor(losses, dtype=torch.float64))
    method.extra_loss().backward()
    return method.loss_weights.grad.clone()


def test_first_step_pulls_weighted_norms_to_their_mean():
    # K = diag(4, 1): norms (2, 1), w = 1, r = 1 -> target Ḡ = 1.5 for both
    # ∂/∂w_t |w_t n_t − 1.5| = sign(n_t − 1.5) n_t = (+2, −1)
    method = _gradnorm()
    torch.testing.assert_close(_grad_of_w(method, [[4.0, 0.0], [0.0, 1.0]], [1.0, 1.0]), torch.tensor([2.0, -1.0]))


def test_training_rates_enter_the_target():
    method = _gradnorm(alpha=1.5)
    _grad_of_w(method, np.eye(2).tolist(), [2.0, 4.0])  # records L(0) = (2, 4)
    # now L = (1, 4): L̃ = (0.5, 1), r = (2/3, 4/3), Ḡ = 1 -> target = r^1.5 = (0.544, 1.540)
    # norms = 1, w = 1: grads sign(1 − target) = (+1, −1)
    torch.testing.assert_close(_grad_of_w(method, np.eye(2).tolist(), [1.0, 4.0]), torch.tensor([1.0, -1.0]))
    assert method.info["grad_norm_target"].numpy() == pytest.approx([(2 / 3) ** 1.5, (4 / 3) ** 1.5])
    torch.testing.assert_close(method.state.initial_losses, torch.tensor([2.0, 4.0], dtype=torch.float64))


def test_weights_are_renormalised_to_sum_t_and_kept_positive():
    method = _gradnorm(3)
    with torch.no_grad():
        method.loss_weights.copy_(torch.tensor([3.0, 1.0, -2.0]))
    w = method.weights(torch.eye(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    assert w.sum().item() == pytest.approx(3.0)
    assert torch.all(w > 0)
    assert not w.requires_grad


def test_backward_weights_network_and_trains_only_w_through_l_grad(batch):
    model = tiny_model()
    method = M.create("gradnorm", tasks=model.task_names)
    with torch.no_grad():
        method.loss_weights.copy_(torch.tensor([1.5, 0.5]))
    out, losses = tiny_losses(model, batch)
    record = repmtl.backward(losses, representation=out.representation, method=method)
    torch.testing.assert_close(record.weights, torch.tensor([1.5, 0.5], dtype=torch.float64))
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out, losses = tiny_losses(model, batch)
    (1.5 * losses["t0"] + 0.5 * losses["t1"]).backward(retain_graph=True)
    for g, p in zip(got, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)
    # w's gradient is sign(w_t n_t − Ḡ) n_t with n_t the last-layer gradient norms (r = 1)
    last = list(model.encoder[3].parameters())
    norms = []
    for loss in losses.values():
        grads = torch.autograd.grad(loss, last, retain_graph=True)
        norms.append(torch.sqrt(sum((g**2).sum() for g in grads)))
    norms = torch.stack(norms)
    weighted = torch.tensor([1.5, 0.5], dtype=torch.float64) * norms
    expected = torch.sign(weighted - weighted.mean()) * norms
    torch.testing.assert_close(method.loss_weights.grad, expected.float())


def test_level_defaults_to_the_last_shared_layer():
    assert M.default_level(M.lookup("gradnorm")) == "last_layer"
    assert M.create("gradnorm").resolve_level(None) == "last_layer"
    assert M.create("gradnorm").resolve_level("parameters") == "parameters"  # every shared parameter


def test_state_dict_round_trip():
    a = _gradnorm()
    _grad_of_w(a, [[4.0, 0.0], [0.0, 1.0]], [1.0, 2.0])
    b = _gradnorm()
    b.load_state_dict(a.state_dict())
    assert b.state.steps == 1
    torch.testing.assert_close(b.state.initial_losses, a.state.initial_losses)
    torch.testing.assert_close(
        _grad_of_w(b, [[1.0, 0.0], [0.0, 1.0]], [0.5, 2.0]), _grad_of_w(a, [[1.0, 0.0], [0.0, 1.0]], [0.5, 2.0])
    )


def test_non_finite_norms_do_not_poison_the_weights():
    method = _gradnorm()
    grad = _grad_of_w(method, [[float("inf"), 0.0], [0.0, 1.0]], [1.0, 1.0])
    assert torch.all(torch.isfinite(grad))


@pytest.mark.parametrize("bad", [{"alpha": -1.0}, {"alpha": float("nan")}, {"scope": "first"}])
def test_bad_hyper_parameters_raise(bad):
    with pytest.raises(ValueError):
        M.create("gradnorm", **bad)
