"""DB-MTL (Lin et al., 2023): log losses and max-norm balancing of EMA task gradients."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import repmtl
from repmtl.methods.dbmtl import DBMTL
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import context
from tests.methods._helpers import task_names as _names
from tests.methods._helpers import torch_jacobians as jacobians


def test_two_steps_by_hand():
    method = DBMTL(beta=0.9).bind(["a", "b"])
    g1 = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    # ĝ = 0.1 g → norms 0.5, 0.1 → update ĝ_a + 5 ĝ_b
    torch.testing.assert_close(method.aggregate(g1, context(torch.zeros(2))), torch.tensor([0.3, 0.9], dtype=torch.float64))
    g2 = torch.tensor([[0.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    # ĝ_a = 0.9·[.3,.4] = [.27,.36] (norm .45); ĝ_b = 0.9·[0,.1] + 0.1·[0,2] = [0,.29]
    expected = torch.tensor([0.27, 0.36], dtype=torch.float64) + 0.45 / 0.29 * torch.tensor([0.0, 0.29], dtype=torch.float64)
    torch.testing.assert_close(method.aggregate(g2, context(torch.zeros(2))), expected)


def test_beta_decay_schedule():
    method = DBMTL(beta=0.8, beta_sigma=1.0).bind(["a"])
    g = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    method.aggregate(g, context(torch.zeros(1)))  # β_1 = 0.8: ĝ = 0.2 g
    method.aggregate(2 * g, context(torch.zeros(1)))  # β_2 = 0.4: ĝ = 0.4·0.2 g + 0.6·2 g = 1.28 g
    torch.testing.assert_close(method.state.grad_average, 1.28 * g)


@settings(max_examples=40, deadline=None)
@given(jacobians(), st.integers(1, 3))
def test_properties_over_random_jacobians(jac, steps):
    tasks = jac.shape[0]
    a, b, c = (DBMTL().bind(_names(tasks)) for _ in range(3))
    perm = torch.arange(tasks - 1, -1, -1)
    for _ in range(steps):
        out = a.aggregate(jac, context(torch.zeros(tasks)))
        assert torch.isfinite(out).all()
        tol = {"atol": 1e-12 * max(1.0, jac.abs().max().item()), "rtol": 1e-9}
        torch.testing.assert_close(b.aggregate(jac[perm], context(torch.zeros(tasks))), out, **tol)
        torch.testing.assert_close(c.aggregate(2.0 * jac, context(torch.zeros(tasks))), 2.0 * out, **tol)
    # every non-zero task contributes a vector of the largest EMA norm
    norms = a.state.grad_average.norm(dim=1)
    contributions = a.info["scale"].unsqueeze(1) * a.state.grad_average
    for i in range(tasks):
        if norms[i] > 0:
            torch.testing.assert_close(contributions[i].norm(), norms.max())


def test_state_round_trip():
    gen = torch.Generator().manual_seed(2)
    jacs = [torch.randn(2, 5, generator=gen, dtype=torch.float64) for _ in range(4)]
    first = DBMTL().bind(["a", "b"])
    for jac in jacs[:3]:
        first.aggregate(jac, context(torch.zeros(2)))
    saved = copy.deepcopy(first.state_dict())
    resumed = DBMTL().bind(["a", "b"])
    resumed.load_state_dict(saved)
    out = first.aggregate(jacs[3], context(torch.zeros(2)))
    torch.testing.assert_close(resumed.aggregate(jacs[3], context(torch.zeros(2))), out, rtol=0, atol=0)
    assert not torch.allclose(DBMTL().bind(["a", "b"]).aggregate(jacs[3], context(torch.zeros(2))), out)


def test_backward_matches_per_task_log_gradients():
    """Independent check through repmtl.backward: heads get ∇log L_t = ∇L_t / L_t; the encoder
    gets the first-step DB update (1−β)·max_s‖g_s‖ Σ_t g_t/‖g_t‖ of the log-loss gradients."""
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    shared, heads = {}, {}
    for t in model.task_names:
        model.zero_grad()
        _, losses = tiny_losses(model, x)
        torch.log(losses[t]).backward()
        shared[t] = torch.cat([p.grad.flatten() for p in model.shared_parameters()])
        heads[t] = [p.grad.clone() for p in model.task_parameters(t)]
    model.zero_grad()
    out, losses = tiny_losses(model, x)
    repmtl.backward(losses, representation=out.representation, method=DBMTL(beta=0.9), eps=0.0)
    norms = {t: g.norm() for t, g in shared.items()}
    expected = 0.1 * max(norms.values()) * sum(g / norms[t] for t, g in shared.items())
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in model.shared_parameters()]), expected)
    for t in model.task_names:
        for p, e in zip(model.task_parameters(t), heads[t]):
            torch.testing.assert_close(p.grad, e)


def test_representation_level_is_refused():
    torch.manual_seed(1)
    model = tiny_model()
    out, losses = tiny_losses(model, torch.randn(4, 1, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="undefined at level 'representation'"):
        repmtl.backward(losses, representation=out.representation, method=DBMTL(), level="representation")


def test_a_jacobian_of_another_width_is_refused():
    method = DBMTL().bind(["a", "b"])
    method.aggregate(torch.ones(2, 5, dtype=torch.float64), context(torch.ones(2, dtype=torch.float64)))
    with pytest.raises(ValueError, match="changed since the first step"):
        method.aggregate(torch.ones(2, 6, dtype=torch.float64), context(torch.ones(2, dtype=torch.float64)))
