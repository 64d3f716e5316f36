"""TaskJacobian: the preallocated loop buffer, vmap blocks, Gramian and the in-place Jᵀα update."""

import pytest
import torch
from torch import nn

from repmtl import grads as G
from tests.conftest import tiny_losses, tiny_model


def _manual_jacobian(losses, params):
    return torch.stack(
        [torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)]) for loss in losses]
    )


@pytest.mark.parametrize("vectorize", [True, False])
def test_task_jacobian_blocks_gramian_and_combination(vectorize):
    model = tiny_model(3)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = model.double()
    _, losses = tiny_losses(model, x)
    terms = list(losses.values())
    params = list(model.shared_parameters())
    manual = _manual_jacobian(terms, params)
    jac = G.task_jacobian(terms, params, vectorize=vectorize)
    assert (jac.flat is None) == vectorize  # the loop fills one buffer; vmap keeps autograd's blocks
    torch.testing.assert_close(jac.matrix(), manual)
    for block, p in zip(jac.blocks, params):
        assert block.shape == (3, *p.shape)
    torch.testing.assert_close(jac.gramian(), manual @ manual.T)
    alpha = torch.tensor([0.2, -1.5, 3.0], dtype=torch.float64)
    combined = torch.cat([c.flatten() for c in jac.combine(alpha)])
    torch.testing.assert_close(combined, alpha @ manual)


@pytest.mark.parametrize("vectorize", [True, False])
def test_accumulate_equals_backward_of_weighted_sum(vectorize):
    """Jᵀα written into .grad is exactly the shared-parameter gradient of Σ α_t L_t."""
    model = tiny_model(2).double()
    x = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    alpha = torch.tensor([0.7, 1.9], dtype=torch.float64)
    params = list(model.shared_parameters())
    _, losses = tiny_losses(model, x)
    expected = torch.autograd.grad((alpha * torch.stack(list(losses.values()))).sum(), params)

    _, losses = tiny_losses(model, x)
    jac = G.task_jacobian(list(losses.values()), params, vectorize=vectorize)
    for p in params:
        p.grad = torch.ones_like(p)  # accumulates onto what is there
    jac.accumulate(alpha)
    for p, g in zip(params, expected):
        torch.testing.assert_close(p.grad, g + 1)
    for p in params:
        p.grad = None
    jac.accumulate(alpha.float())  # weights of another dtype are cast to J's
    for p, g in zip(params, expected):
        assert p.grad.dtype == p.dtype
        torch.testing.assert_close(p.grad, g)
    with pytest.raises(ValueError, match="expected 2 weights"):
        jac.combine(torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("vectorize", [True, False])
def test_unreached_parameter_rows_are_zero_in_an_uninitialised_buffer(vectorize):
    w = torch.randn(3, requires_grad=True)
    unused = torch.randn(2, 2, requires_grad=True)
    for _ in range(3):  # fresh buffers may reuse memory holding old values
        losses = [(w * 2).sum(), (w**2).sum()]
        jac = G.task_jacobian(losses, [w, unused], vectorize=vectorize)
        torch.testing.assert_close(jac.matrix()[:, 3:], torch.zeros(2, 4))
        torch.testing.assert_close(jac.matrix()[1, :3], 2 * w.detach())


def test_vectorize_rule_follows_the_device():
    linear = [torch.zeros(4, 3), torch.zeros(4)]
    conv = [torch.zeros(4, 3, 3, 3), torch.zeros(4)]
    assert not G.jacobian_uses_vmap(None, linear)  # the loop on the CPU (grads.py module doc)
    assert not G.jacobian_uses_vmap(None, conv)
    assert G.jacobian_uses_vmap(None, [torch.zeros(4, 3, 3, 3, device="meta")])
    assert not G.jacobian_uses_vmap(False, linear) and G.jacobian_uses_vmap(True, conv)
    with pytest.raises(ValueError, match="vectorize must be"):
        G.task_jacobian([torch.zeros(1, requires_grad=True).sum()], [torch.zeros(1, requires_grad=True)], vectorize="yes")


def test_auto_measures_once_per_signature_and_returns_the_jacobian():
    G.clear_measured_vectorize()
    torch.manual_seed(0)
    encoder = nn.Linear(3, 4)
    x = torch.randn(5, 3)
    params = list(encoder.parameters())
    for _ in range(2):
        z = encoder(x)
        losses = [z[:, 0].square().mean(), z.sum()]
        jac = G.task_jacobian(losses, params, vectorize="auto")
        torch.testing.assert_close(jac.matrix(), _manual_jacobian(losses, params))
    choices = G.measured_vectorize_choices()
    assert len(choices) == 1
    ((device, _, shapes, num_tasks, edges),) = choices
    assert (device, shapes, num_tasks, edges) == ("cpu", ((4, 3), (4,)), 2, 0)
    G.clear_measured_vectorize()
    assert not G.measured_vectorize_choices()


def test_accumulate_direction_copies_and_checks_size():
    params = [torch.zeros(2, 2, requires_grad=True), torch.zeros(1, requires_grad=True)]
    direction = torch.arange(5.0)
    G.accumulate_direction(direction, params)
    direction.zero_()  # the caller may reuse its tensor: .grad holds a copy
    torch.testing.assert_close(params[0].grad, torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    G.accumulate_direction(torch.ones(5), params)
    torch.testing.assert_close(params[1].grad, torch.tensor([5.0]))
    with pytest.raises(ValueError, match="entries"):
        G.accumulate_direction(torch.ones(4), params)


@pytest.mark.parametrize("vectorize", [True, False])
def test_task_inputs_give_each_tasks_own_head_gradient(vectorize):
    model = tiny_model(2)
    x = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    _, losses = tiny_losses(model, x)
    terms = list(losses.values())
    heads = [list(model.task_parameters(t)) for t in model.task_names]
    jac = G.task_jacobian(terms, list(model.shared_parameters()), vectorize=vectorize, task_inputs=heads)
    for term, params, grads in zip(terms, heads, jac.task_grads):
        for g, expected in zip(grads, torch.autograd.grad(term, params, retain_graph=True)):
            torch.testing.assert_close(g, expected)
    with pytest.raises(ValueError, match="task_inputs for 1 tasks"):
        G.task_jacobian(terms, list(model.shared_parameters()), task_inputs=heads[:1])


@pytest.mark.parametrize("vectorize", [True, False])
def test_keep_graph_false_frees_the_graph_in_the_last_pass(vectorize):
    model = tiny_model(2)
    torch.manual_seed(0)
    _, losses = tiny_losses(model, torch.randn(3, 1, 5, 5, dtype=torch.float64))
    terms = list(losses.values())
    params = list(model.shared_parameters())
    jac = G.task_jacobian(terms, params, vectorize=vectorize, keep_graph=False)
    torch.testing.assert_close(jac.matrix(), _manual_jacobian_after_rebuild(model))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        terms[0].backward()


def _manual_jacobian_after_rebuild(model):
    torch.manual_seed(0)
    _, losses = tiny_losses(model, torch.randn(3, 1, 5, 5, dtype=torch.float64))
    return _manual_jacobian(list(losses.values()), list(model.shared_parameters()))
