"""GradVac (Wang et al., ICLR 2021): closed-form correction, EMA goals, per-tensor groups, state."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import repmtl
from repmtl.methods.gradvac import GradVac, vaccine_coefficients
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import context
from tests.methods._helpers import task_names as _names
from tests.methods._helpers import torch_jacobians as jacobians


def _cos(a, b):
    return a @ b / (a.norm() * b.norm())  # no epsilon: exact at every scale



def reference_gradvac(jac, segments, goal, beta, seed):
    """Alg. 1 on the gradient vectors themselves, one group after another (independent of the
    coefficient-space implementation). Draws the task orders exactly as the method does."""
    torch.manual_seed(seed)
    tasks = jac.shape[0]
    orders = [[j for j in torch.randperm(tasks).tolist() if j != i] for i in range(tasks)]
    goal = goal.clone()
    out = []
    for g, block in enumerate(jac.split(segments, dim=1)):
        pc = block.clone()
        for i in range(tasks):
            for j in orders[i]:
                gi, gj = pc[i], block[j]
                ni, nj = gi.norm(), gj.norm()
                phi = float(gi @ gj / (ni * nj)) if ni > 0 and nj > 0 else 0.0
                phi = max(-1.0, min(1.0, phi))
                target = float(goal[i, j, g])
                if ni > 0 and nj > 0 and phi < target < 1.0:
                    w = ni * (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)) / (nj * math.sqrt(1 - target**2))
                    pc[i] = gi + w * gj
                goal[i, j, g] = (1 - beta) * target + beta * phi
        out.append(pc.sum(0))
    return torch.cat(out), goal


def test_hand_case_two_conflicting_tasks():
    jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    method = GradVac(beta=0.01, granularity="model").bind(["a", "b"])
    out = method.aggregate(jac, context(torch.ones(2)))
    # goal 0: g_a += ½ g_b → [½, ½] ⟂ g_b; g_b += g_a → [0, 1] ⟂ g_a; sum [½, 3/2]
    torch.testing.assert_close(out, torch.tensor([0.5, 1.5], dtype=torch.float64))
    phi = -1 / math.sqrt(2)
    expected_goal = torch.tensor([[0.0, 0.01 * phi], [0.01 * phi, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(method.state.goal[:, :, 0], expected_goal)


def test_agreeing_gradients_are_untouched():
    jac = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    out = GradVac().bind(["a", "b"]).aggregate(jac, context(torch.ones(2)))
    torch.testing.assert_close(out, jac.sum(0))


@settings(max_examples=30, deadline=None)
@given(jacobians(min_tasks=2, max_tasks=2), st.floats(-0.95, 0.95))
def test_correction_reaches_the_goal_exactly(jac, goal_value):
    """After the correction, cos(g_i^PC, g_j) equals the goal (or φ if φ was already above it)."""
    gram = (jac @ jac.T).unsqueeze(0)
    goal = torch.full((2, 2, 1), goal_value, dtype=torch.float64)
    coeff, _, _ = vaccine_coefficients(gram, goal, [[1], [0]], beta=0.5)
    corrected = coeff[0] @ jac
    for i, j in ((0, 1), (1, 0)):
        if jac[i].norm() == 0 or jac[j].norm() == 0:
            torch.testing.assert_close(corrected[i], jac[i])
            continue
        phi = _cos(jac[i], jac[j]).clamp(-1, 1).item()
        if phi < -1 + 1e-9:
            # anti-parallel: no vector g_i + w g_j has the goal's angle; the formula zeroes g_i
            assert corrected[i].abs().max() <= 1e-9 * jac[i].abs().max()
            continue
        after = _cos(corrected[i], jac[j]).item()
        assert after == pytest.approx(max(phi, goal_value), abs=1e-6)


@pytest.mark.parametrize("granularity", ["tensor", "model"])
def test_matches_vector_space_reference_over_steps(granularity):
    gen = torch.Generator().manual_seed(0)
    segments = [3, 5, 2]
    method = GradVac(beta=0.3, granularity=granularity).bind(_names(3))
    groups = segments if granularity == "tensor" else [10]
    goal = torch.zeros(3, 3, len(groups), dtype=torch.float64)
    for step in range(4):
        jac = torch.randn(3, 10, generator=gen, dtype=torch.float64)
        jac[1] = -0.8 * jac[0] + 0.3 * jac[1]  # conflicts, so corrections happen
        expected, goal = reference_gradvac(jac, groups, goal, 0.3, seed=step)
        torch.manual_seed(step)
        out = method.aggregate(jac, context(torch.ones(3), segments))
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(method.state.goal, goal)


def test_ema_only_on_correction_variant():
    jac = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)  # no conflict, φ = 0.8 > 0
    always = GradVac(beta=0.5).bind(["a", "b"])
    lazy = GradVac(beta=0.5, ema="on_correction").bind(["a", "b"])
    always.aggregate(jac, context(torch.ones(2)))
    lazy.aggregate(jac, context(torch.ones(2)))
    assert always.state.goal[0, 1, 0].item() == pytest.approx(0.4)
    assert lazy.state.goal[0, 1, 0].item() == 0.0


@settings(max_examples=40, deadline=None)
@given(jacobians(), st.integers(1, 3))
def test_finite_on_random_jacobians(jac, steps):
    method = GradVac(beta=0.5).bind(_names(jac.shape[0]))
    for _ in range(steps):
        out = method.aggregate(jac, context(torch.ones(jac.shape[0]), [jac.shape[1]]))
        assert torch.isfinite(out).all()
        assert torch.isfinite(method.state.goal).all() and (method.state.goal.abs() <= 1 + 1e-12).all()


@settings(max_examples=30, deadline=None)
@given(jacobians(min_tasks=2, max_tasks=2), st.integers(1, 3))
def test_two_task_permutation_invariance(jac, steps):
    """With two tasks the visiting orders are forced, so swapping the tasks leaves the update
    unchanged and swaps the goals."""
    a = GradVac(beta=0.5).bind(["a", "b"])
    b = GradVac(beta=0.5).bind(["b", "a"])
    for _ in range(steps):
        out_a = a.aggregate(jac, context(torch.ones(2)))
        out_b = b.aggregate(jac.flip(0), context(torch.ones(2)))
        torch.testing.assert_close(out_a, out_b, atol=1e-12 * max(1.0, jac.abs().max().item()) * 10, rtol=1e-9)
    torch.testing.assert_close(a.state.goal, b.state.goal.flip(0).flip(1))


def _conflicting(step):
    gen = torch.Generator().manual_seed(100 + step)
    jac = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    jac[2] = -jac[0] + 0.2 * jac[2]
    return jac


def test_state_round_trip():
    segments = [5, 3]
    first = GradVac(beta=0.2).bind(_names(3))
    for step in range(3):
        first.aggregate(_conflicting(step), context(torch.ones(3), segments))
    saved = copy.deepcopy(first.state_dict())
    resumed = GradVac(beta=0.2).bind(_names(3))
    resumed.load_state_dict(saved)
    fresh = GradVac(beta=0.2).bind(_names(3))
    outputs = []
    for m in (first, resumed, fresh):
        torch.manual_seed(7)
        outputs.append(m.aggregate(_conflicting(3), context(torch.ones(3), segments)))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    assert not torch.allclose(outputs[2], outputs[0])  # the goals matter: the test can fail
    unbound = GradVac(beta=0.2)
    unbound.load_state_dict(saved)  # binds itself from the checkpoint
    assert unbound.task_names == first.task_names


def test_changing_the_parameter_groups_is_refused():
    method = GradVac().bind(["a", "b"])
    method.aggregate(torch.randn(2, 6, dtype=torch.float64), context(torch.ones(2), [3, 3]))
    with pytest.raises(ValueError, match="parameter groups"):
        method.aggregate(torch.randn(2, 6, dtype=torch.float64), context(torch.ones(2), [6]))


@pytest.mark.parametrize("granularity", ["tensor", "model"])
@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_backward_updates_every_parameter(level, granularity):
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    method = GradVac(granularity=granularity)
    for _ in range(2):
        model.zero_grad()
        out, losses = tiny_losses(model, x)
        repmtl.backward(losses, representation=out.representation, method=method, level=level)
    expected_groups = len(list(model.shared_parameters())) if (level == "parameters" and granularity == "tensor") else 1
    assert method.state.goal.shape == (2, 2, expected_groups)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
