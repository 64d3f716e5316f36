"""MTAdam (Malkiel & Wolf): per-tensor balancing to the anchor task, per-task Adam moments."""

import copy

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import repmtl
from repmtl.methods.mtadam import MTAdam
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import context, torch_jacobians
from tests.methods._helpers import task_names as _names


def jacobians(**kwargs):
    return torch_jacobians(segmented=True, **kwargs)





class ReferenceMTAdam:
    """The official optimizer's arithmetic for one list of parameter tensors, task by task,
    returning the step divided by lr (what SGD(lr) then applies)."""

    def __init__(self, tasks, sizes, betas=(0.9, 0.999, 0.9), eps=1e-8, ranks=None):
        self.b1, self.b2, self.b3 = betas
        self.eps = eps
        self.ranks = ranks or [1.0] * tasks
        self.step = 1
        self.norms = [[None] * len(sizes) for _ in range(tasks)]
        self.m = [[torch.zeros(s, dtype=torch.float64) for s in sizes] for _ in range(tasks)]
        self.v = [[torch.zeros(s, dtype=torch.float64) for s in sizes] for _ in range(tasks)]
        self.sizes = sizes

    def __call__(self, jac):
        tasks = jac.shape[0]
        blocks = [list(row.split(self.sizes)) for row in jac]
        for p in range(len(self.sizes)):
            for i in range(tasks):
                n = blocks[i][p].norm()
                self.norms[i][p] = n if self.step == 1 else self.b3 * self.norms[i][p] + (1 - self.b3) * n
        out = []
        for p in range(len(self.sizes)):
            denoms, avgs = [], []
            for i in range(tasks):
                g = blocks[i][p]
                if self.norms[i][p] > 1e-10:
                    anchor = next(a for a in range(tasks) if self.norms[a][p] > 1e-10)
                    g = self.ranks[i] * self.norms[anchor][p] * g / self.norms[i][p]
                self.m[i][p] = self.b1 * self.m[i][p] + (1 - self.b1) * g
                self.v[i][p] = self.b2 * self.v[i][p] + (1 - self.b2) * g * g
                denoms.append(self.v[i][p].sqrt() / (1 - self.b2**self.step) ** 0.5 + self.eps)
                avgs.append(self.m[i][p] / (1 - self.b1**self.step))
            denom = torch.stack(denoms).max(0).values
            out.append(sum(a / denom for a in avgs))
        self.step += 1
        return torch.cat(out)


def test_first_step_hand_case():
    # first step: m̂ = g̃, v̂ = g̃², so step = Σ_i g̃_i / max_i(|g̃_i| + ε)
    jac = torch.tensor([[1.0, 2.0], [0.0, 20.0]], dtype=torch.float64)
    out = MTAdam().bind(["a", "b"]).aggregate(jac, context(torch.ones(2), [2]))
    anchor = 5**0.5
    scaled_b = torch.tensor([0.0, anchor], dtype=torch.float64)  # g_b · ‖g_a‖/‖g_b‖
    expected = (jac[0] + scaled_b) / (torch.maximum(jac[0].abs(), scaled_b.abs()) + 1e-8)
    torch.testing.assert_close(out, expected)
    assert out[1].item() == pytest.approx((2 + anchor) / anchor, rel=1e-6)


@pytest.mark.parametrize("ranks", [None, [1.0, 0.5, 2.0]])
def test_matches_the_official_arithmetic_over_steps(ranks):
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([[1.0], [30.0], [0.01]], dtype=torch.float64)
    method = MTAdam(ranks=ranks).bind(_names(3))
    ref = ReferenceMTAdam(3, [4, 2, 5], ranks=ranks)
    for _ in range(5):
        jac = torch.randn(3, 11, generator=gen, dtype=torch.float64) * scales
        torch.testing.assert_close(method.aggregate(jac, context(torch.ones(3), [4, 2, 5])), ref(jac))


def test_sgd_on_the_direction_applies_the_mtadam_step():
    lr = 1e-3
    theta = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    sgd = torch.optim.SGD([theta], lr=lr)
    method = MTAdam().bind(["a", "b"])
    ref = ReferenceMTAdam(2, [6])
    expected = torch.zeros(6, dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        jac = torch.randn(2, 6, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [50.0]], dtype=torch.float64)
        theta.grad = method.aggregate(jac, context(torch.ones(2), [6]))
        sgd.step()
        expected -= lr * ref(jac)
    torch.testing.assert_close(theta.detach(), expected)


@settings(max_examples=40, deadline=None)
@given(jacobians(), st.integers(1, 3))
def test_finite_on_random_jacobians(case, steps):
    jac, segments = case
    method = MTAdam().bind(_names(jac.shape[0]))
    for _ in range(steps):
        assert torch.isfinite(method.aggregate(jac, context(torch.ones(jac.shape[0]), segments))).all()


@settings(max_examples=30, deadline=None)
@given(jacobians(min_tasks=3, max_tasks=4), st.integers(1, 3))
def test_non_anchor_tasks_are_interchangeable(case, steps):
    """Permuting the tasks after the anchor (task 0, when its gradient is non-zero in every
    tensor) leaves the update unchanged."""
    jac, segments = case
    assume(all(block[0].norm() > 1e-10 for block in jac.split(segments, dim=1)))
    tasks = jac.shape[0]
    perm = torch.tensor([0, *reversed(range(1, tasks))])
    a, b = MTAdam().bind(_names(tasks)), MTAdam().bind(_names(tasks))
    for _ in range(steps):
        torch.testing.assert_close(
            a.aggregate(jac, context(torch.ones(tasks), segments)), b.aggregate(jac[perm], context(torch.ones(tasks), segments))
        )


def test_state_round_trip():
    gen = torch.Generator().manual_seed(5)
    jacs = [torch.randn(2, 7, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [9.0]]) for _ in range(4)]
    first = MTAdam().bind(["a", "b"])
    for jac in jacs[:3]:
        first.aggregate(jac, context(torch.ones(2), [3, 4]))
    saved = copy.deepcopy(first.state_dict())
    resumed = MTAdam().bind(["a", "b"])
    resumed.load_state_dict(saved)
    out = first.aggregate(jacs[3], context(torch.ones(2), [3, 4]))
    torch.testing.assert_close(resumed.aggregate(jacs[3], context(torch.ones(2), [3, 4])), out, rtol=0, atol=0)
    assert not torch.allclose(MTAdam().bind(["a", "b"]).aggregate(jacs[3], context(torch.ones(2), [3, 4])), out)


def test_representation_level_is_refused():
    torch.manual_seed(1)
    model = tiny_model()
    out, losses = tiny_losses(model, torch.randn(4, 1, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="undefined at level 'representation'"):
        repmtl.backward(losses, representation=out.representation, method=MTAdam(), level="representation")


def test_backward_updates_every_parameter_and_heads_get_plain_gradients():
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    heads = {}
    for t in model.task_names:
        model.zero_grad()
        _, losses = tiny_losses(model, x)
        losses[t].backward()
        heads[t] = [p.grad.clone() for p in model.task_parameters(t)]
    model.zero_grad()
    out, losses = tiny_losses(model, x)
    repmtl.backward(losses, representation=out.representation, method=MTAdam(), level="parameters")
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    for t in model.task_names:
        for p, e in zip(model.task_parameters(t), heads[t]):
            torch.testing.assert_close(p.grad, e)
