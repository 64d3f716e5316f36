"""MetaBalance (He et al., WWW 2022): per-tensor magnitude adaptation of auxiliary gradients."""

import copy

import pytest
import torch
from hypothesis import given, settings

import repmtl
from repmtl.methods.metabalance import MetaBalance
from tests.conftest import tiny_losses, tiny_model
from tests.methods._helpers import context, torch_jacobians
from tests.methods._helpers import task_names as _names


def jacobians(**kwargs):
    return torch_jacobians(segmented=True, **kwargs)





def reference(jacs, segments, relax, beta, strategy="both", target=0):
    """The official per-tensor loop, written over python lists of parameter tensors."""
    tasks = jacs[0].shape[0]
    averages = [[0.0] * len(segments) for _ in range(tasks)]
    outs = []
    for jac in jacs:
        out = []
        for g, block in enumerate(jac.split(segments, dim=1)):
            for i in range(tasks):
                averages[i][g] = beta * averages[i][g] + (1 - beta) * block[i].norm().item()
            total = torch.zeros(block.shape[1], dtype=jac.dtype)
            for i in range(tasks):
                m_t, m_i = averages[target][g], averages[i][g]
                adapt = i != target and m_i > 0
                if strategy == "reduce":
                    adapt = adapt and m_i > m_t
                if strategy == "enlarge":
                    adapt = adapt and m_i < m_t
                factor = relax * m_t / m_i + (1 - relax) if adapt else 1.0
                total += factor * block[i]
            out.append(total)
        outs.append(torch.cat(out))
    return outs


@pytest.mark.parametrize(
    "strategy, expected", [("both", [3.0, 10.5]), ("reduce", [3.0, 10.5]), ("enlarge", [3.0, 14.0])]
)
def test_hand_case(strategy, expected):
    # target norm 5, auxiliary norm 10: factor 0.7·½ + 0.3 = 0.65 when adapted
    jac = torch.tensor([[3.0, 4.0], [0.0, 10.0]], dtype=torch.float64)
    out = MetaBalance(strategy=strategy).bind(["main", "aux"]).aggregate(jac, context(torch.ones(2), [2]))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("strategy", ["both", "reduce", "enlarge"])
def test_matches_reference_over_steps(strategy):
    gen = torch.Generator().manual_seed(0)
    jacs = [torch.randn(3, 9, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [8.0], [0.1]]) for _ in range(4)]
    method = MetaBalance(relax_factor=0.6, beta=0.8, strategy=strategy).bind(_names(3))
    expected = reference(jacs, [4, 5], 0.6, 0.8, strategy)
    for jac, e in zip(jacs, expected):
        torch.testing.assert_close(method.aggregate(jac, context(torch.ones(3), [4, 5])), e)


def test_target_by_name_and_validation():
    jac = torch.tensor([[0.0, 10.0], [3.0, 4.0]], dtype=torch.float64)
    out = MetaBalance(target="main").bind(["aux", "main"]).aggregate(jac, context(torch.ones(2), [2]))
    torch.testing.assert_close(out, torch.tensor([3.0, 10.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="not one of"):
        MetaBalance(target="x").bind(["a", "b"])
    with pytest.raises(ValueError, match="relax_factor"):
        MetaBalance(relax_factor=2.0)


@settings(max_examples=40, deadline=None)
@given(jacobians())
def test_properties_over_random_jacobians(case):
    jac, segments = case
    tasks = jac.shape[0]
    out = MetaBalance().bind(_names(tasks)).aggregate(jac, context(torch.ones(tasks), segments))
    assert torch.isfinite(out).all()
    # exact scale equivariance
    torch.testing.assert_close(MetaBalance().bind(_names(tasks)).aggregate(3.0 * jac, context(torch.ones(tasks), segments)), 3.0 * out)
    # relax factor 0: the plain sum
    torch.testing.assert_close(MetaBalance(relax_factor=0.0).bind(_names(tasks)).aggregate(jac, context(torch.ones(tasks), segments)), jac.sum(0))
    # auxiliary tasks are interchangeable
    if tasks >= 3:
        perm = torch.tensor([0, *reversed(range(1, tasks))])
        torch.testing.assert_close(MetaBalance().bind(_names(tasks)).aggregate(jac[perm], context(torch.ones(tasks), segments)), out)


@settings(max_examples=30, deadline=None)
@given(jacobians(min_tasks=2))
def test_full_relaxation_matches_the_target_norm_per_tensor(case):
    """With r = 1 on the first step each adapted auxiliary gradient gets the target's norm in
    every tensor (the averages are 0.1·‖g‖ for all tasks, so their ratio is the norms')."""
    jac, segments = case
    tasks = jac.shape[0]
    method = MetaBalance(relax_factor=1.0).bind(_names(tasks))
    method.aggregate(jac, context(torch.ones(tasks), segments))
    for g, block in enumerate(jac.split(segments, dim=1)):
        factors = method.scales(method.state.norm_average)[:, g]
        target = block[0].norm()
        for i in range(1, tasks):
            if block[i].norm() > 0:
                torch.testing.assert_close((factors[i] * block[i]).norm(), target)


def test_state_round_trip():
    gen = torch.Generator().manual_seed(3)
    jacs = [torch.randn(3, 7, generator=gen, dtype=torch.float64) * (k + 1) for k in range(4)]
    first = MetaBalance().bind(_names(3))
    for jac in jacs[:3]:
        first.aggregate(jac, context(torch.ones(3), [3, 4]))
    saved = copy.deepcopy(first.state_dict())
    resumed = MetaBalance().bind(_names(3))
    resumed.load_state_dict(saved)
    out = first.aggregate(jacs[3], context(torch.ones(3), [3, 4]))
    torch.testing.assert_close(resumed.aggregate(jacs[3], context(torch.ones(3), [3, 4])), out, rtol=0, atol=0)
    fresh = MetaBalance().bind(_names(3)).aggregate(jacs[3], context(torch.ones(3), [3, 4]))
    assert not torch.allclose(fresh, out)


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_backward_updates_every_parameter(level):
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    method = MetaBalance()
    for _ in range(2):
        model.zero_grad()
        out, losses = tiny_losses(model, x)
        repmtl.backward(losses, representation=out.representation, method=method, level=level)
    groups = len(list(model.shared_parameters())) if level == "parameters" else 1
    assert method.state.norm_average.shape == (2, groups)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
