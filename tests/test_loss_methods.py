"""Loss-scaling methods of the foundation against their defining formulas."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from repmtl import methods


def _bound(name, tasks=("a", "b", "c"), **kw):
    return methods.create(name, tasks=list(tasks), **kw)


def test_ew_is_ones():
    torch.testing.assert_close(_bound("ew").weights(torch.tensor([3.0, 0.1, 7.0])), torch.ones(3))


@given(st.lists(st.floats(1e-6, 1e6), min_size=1, max_size=6))
@settings(max_examples=40, deadline=None)
def test_gls_gradient_equals_geometric_mean_gradient(values):
    losses = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    geometric = losses.log().mean().exp()
    (expected,) = torch.autograd.grad(geometric, losses)
    weights = _bound("gls", tasks=[f"t{i}" for i in range(len(values))]).weights(losses.detach())
    torch.testing.assert_close(weights, expected)


def test_gls_refuses_non_positive_losses_naming_the_task():
    with pytest.raises(ValueError, match=r"\['b'\]"):
        _bound("gls").weights(torch.tensor([1.0, 0.0, 2.0]))


def test_rlw_weights_are_softmax_of_a_normal_draw_and_reproducible():
    torch.manual_seed(3)
    draw = torch.randn(3)
    torch.manual_seed(3)
    weights = _bound("rlw").weights(torch.ones(3))
    torch.testing.assert_close(weights, torch.softmax(draw, 0))
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))


def test_uw_objective_matches_kendall_eq7():
    method = _bound("uw", tasks=("a", "b"), init_log_variance=0.0)
    with torch.no_grad():
        method.log_variance.copy_(torch.tensor([0.5, -1.0]))
    losses = torch.tensor([2.0, 3.0])
    objective = (method.weights(losses) * losses).sum() + method.extra_loss()
    sigma2 = torch.tensor([0.5, -1.0]).exp()
    expected = (losses / (2 * sigma2) + 0.5 * sigma2.log()).sum()
    torch.testing.assert_close(objective, expected)
    objective.backward()  # d/ds [½e^{-s}L + ½s] = ½ − ½e^{-s}L
    torch.testing.assert_close(method.log_variance.grad, 0.5 - 0.5 * torch.exp(-torch.tensor([0.5, -1.0])) * losses)


def test_dwa_follows_mtan_eq7_over_epochs():
    method = _bound("dwa", tasks=("a", "b"), temperature=2.0)
    epoch_losses = [torch.tensor([4.0, 2.0]), torch.tensor([2.0, 1.5]), torch.tensor([1.0, 1.0])]
    seen = []
    for losses in epoch_losses:
        for _ in range(3):
            seen.append(method.weights(losses))
        method.end_epoch()
    # epochs 0 and 1: w = 1
    for w in seen[:6]:
        torch.testing.assert_close(w, torch.ones(2))
    # epoch 2 uses r = L(1)/L(0) = (0.5, 0.75)
    r = torch.tensor([0.5, 0.75])
    expected = 2 * torch.softmax(r / 2.0, 0)
    torch.testing.assert_close(seen[6], expected)
    # after epoch 2, r = L(2)/L(1) = (0.5, 2/3)
    torch.testing.assert_close(method.weights(torch.ones(2)), 2 * torch.softmax(torch.tensor([0.5, 2 / 3]) / 2, 0))


def test_dwa_state_round_trip():
    a = _bound("dwa", tasks=("a", "b"))
    for losses in ([3.0, 1.0], [2.0, 1.0], [1.0, 1.0]):
        a.weights(torch.tensor(losses))
        a.end_epoch()
    a.weights(torch.tensor([5.0, 5.0]))  # mid-epoch state too
    b = _bound("dwa", tasks=("a", "b"))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.weights(torch.ones(2)), b.weights(torch.ones(2)))
    a.end_epoch()
    b.end_epoch()
    torch.testing.assert_close(a.weights(torch.ones(2)), b.weights(torch.ones(2)))


def test_create_rejects_unknown_hyper_parameters():
    with pytest.raises(ValueError, match="it accepts: temperature"):
        methods.create("dwa", temp=1.0)


def test_fixed_weights_by_order_and_by_name():
    torch.testing.assert_close(_bound("fixed", weights=[1, 2, 50]).weights(torch.ones(3)), torch.tensor([1.0, 2.0, 50.0]))
    by_name = _bound("fixed", weights={"c": 3.0, "a": 1.0, "b": 0.5})
    torch.testing.assert_close(by_name.weights(torch.ones(3)), torch.tensor([1.0, 0.5, 3.0]))


@pytest.mark.parametrize("weights, match", [([1, 2], "2 weights for 3 tasks"), ({"a": 1, "z": 2}, "missing"),
                                             ([1, -1, 2], "≥ 0"), (None, "needs weights")])
def test_fixed_weights_errors(weights, match):
    with pytest.raises(ValueError, match=match):
        _bound("fixed", weights=weights)
