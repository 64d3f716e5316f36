"""IMTL (hybrid): IMTL-L scales, then IMTL-G on the scaled gradients."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import repmtl
from repmtl import methods as M
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import PROPERTY, gram, jacobians, weights_of


def _imtl(num_tasks, scales):
    method = M.create("imtl", tasks=[f"t{i}" for i in range(num_tasks)])
    with torch.no_grad():
        method.log_scale.copy_(torch.as_tensor(scales, dtype=torch.float32))
    return method


def test_hand_case():
    # g1=(1,0), g2=(0,2), scales e^s = (2, 1): scaled gradients (2,0), (0,2);
    # IMTL-G on them: α' = (1/2, 1/2); α = α' ⊙ e^s = (1, 1/2)
    method = _imtl(2, [np.log(2.0), 0.0])
    alpha = weights_of(method, np.array([[1.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_allclose(alpha, [1.0, 0.5], rtol=1e-6)


@PROPERTY
@given(jacobians(min_tasks=2, max_tasks=8, full_row_rank=True), st.integers(0, 2**32 - 1))
def test_is_imtl_g_on_the_scaled_gradients(jac, seed):
    scales = np.random.default_rng(seed).uniform(-2, 2, size=jac.shape[0]).astype(np.float32)
    alpha = weights_of(_imtl(jac.shape[0], scales), jac)
    factor = np.exp(scales.astype(np.float64))
    scaled = factor[:, None] * jac
    np.testing.assert_allclose(alpha / factor, weights_of("imtl-g", scaled), rtol=1e-5, atol=1e-9)
    assert (alpha / factor).sum() == pytest.approx(1.0, rel=1e-6)


def test_backward_trains_scales_heads_by_exp_scale_shared_weighted(batch):
    model = tiny_model()
    method = M.create("imtl", tasks=model.task_names)
    with torch.no_grad():
        method.log_scale.copy_(torch.tensor([0.4, -0.2]))
    out, losses = tiny_losses(model, batch)
    record = repmtl.backward(losses, representation=out.representation, method=method)
    values = torch.stack([loss.detach() for loss in losses.values()]).float()
    torch.testing.assert_close(method.log_scale.grad, torch.exp(torch.tensor([0.4, -0.2])) * values - 1)

    shared = [p.grad.clone() for p in model.shared_parameters()]
    heads = {t: [p.grad.clone() for p in model.task_parameters(t)] for t in model.task_names}
    alpha = record.weights
    model.zero_grad()
    out, losses = tiny_losses(model, batch)
    sum(a * loss for a, loss in zip(alpha, losses.values(), strict=True)).backward(
        inputs=list(model.shared_parameters()), retain_graph=True
    )
    for g, p in zip(shared, model.shared_parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)
    scales = torch.exp(torch.tensor([0.4, -0.2], dtype=torch.float64))  # IMTL-L: heads get e^{s_t} ∇L_t
    for t, loss in zip(model.task_names, losses.values(), strict=True):
        grads = torch.autograd.grad(loss, list(model.task_parameters(t)), retain_graph=True)
        for g, e in zip(heads[t], grads, strict=True):
            torch.testing.assert_close(g, scales[model.task_names.index(t)] * e)


def test_scales_follow_the_gramian_weights():
    k = gram(np.random.default_rng(3).standard_normal((3, 6)))
    a = weights_of(_imtl(3, [0.0, 0.0, 0.0]), k)
    np.testing.assert_allclose(a, weights_of("imtl-g", k), rtol=1e-9)
