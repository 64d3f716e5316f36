"""IMTL-L: learnable loss scales, objective e^{s_t} L_t − s_t."""

import pytest
import torch

import repmtl
from repmtl import methods as M
from tests.conftest import tiny_losses, tiny_model


def test_weights_are_exp_of_the_scales_with_their_graph():
    method = M.create("imtl-l", tasks=["a", "b"])
    with torch.no_grad():
        method.log_scale.copy_(torch.tensor([0.5, -1.0]))
    w = method.weights(torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(w, torch.exp(torch.tensor([0.5, -1.0], dtype=torch.float64)))
    assert w.requires_grad


def test_backward_gives_the_scales_and_the_network_the_scaled_gradients(batch):
    model = tiny_model()
    method = M.create("imtl-l", tasks=model.task_names)
    with torch.no_grad():
        method.log_scale.copy_(torch.tensor([0.3, -0.7]))
    out, losses = tiny_losses(model, batch)
    repmtl.backward(losses, representation=out.representation, method=method)
    scale = torch.exp(torch.tensor([0.3, -0.7]))
    values = torch.stack([loss.detach() for loss in losses.values()]).float()
    torch.testing.assert_close(method.log_scale.grad, scale * values - 1)

    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out, losses = tiny_losses(model, batch)
    sum(s.double() * loss for s, loss in zip(scale, losses.values(), strict=True)).backward()
    for g, p in zip(got, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


def test_must_be_bound_before_backward(batch):
    model = tiny_model()
    out, losses = tiny_losses(model, batch)
    with pytest.raises(RuntimeError, match="optimizer"):
        repmtl.backward(losses, representation=out.representation, method=M.create("imtl-l"))


def test_state_dict_round_trip():
    a = M.create("imtl-l", tasks=["x", "y"])
    with torch.no_grad():
        a.log_scale.copy_(torch.tensor([0.1, 0.2]))
    b = M.create("imtl-l", tasks=["x", "y"])
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.log_scale, a.log_scale)


def test_bad_init_raises():
    with pytest.raises(ValueError):
        M.create("imtl-l", init_scale=float("nan"))
