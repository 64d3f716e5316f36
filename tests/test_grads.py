import pytest
import torch

from repmtl import grads as G
from tests.conftest import tiny_losses, tiny_model


@pytest.mark.parametrize("num_tasks", [1, 2, 4])
def test_parameter_jacobian_vectorised_equals_loop(num_tasks):
    model = tiny_model(num_tasks)
    x = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    _, losses = tiny_losses(model, x)
    stacked = torch.stack(list(losses.values()))
    params = list(model.shared_parameters())
    fast = G.parameter_jacobian(stacked, params, vectorize=True)
    slow = G.parameter_jacobian(stacked, params, vectorize=False)
    manual = torch.stack(
        [torch.cat([g.flatten() for g in torch.autograd.grad(l, params, retain_graph=True)]) for l in losses.values()]
    )
    assert fast.shape == (num_tasks, sum(p.numel() for p in params))
    torch.testing.assert_close(fast, manual)
    torch.testing.assert_close(slow, manual)


def test_unused_parameter_gives_zero_column():
    w = torch.randn(3, requires_grad=True)
    unused = torch.randn(2, requires_grad=True)
    losses = torch.stack([(w * 2).sum(), (w**2).sum()])
    jac = G.parameter_jacobian(losses, [w, unused])
    torch.testing.assert_close(jac[:, 3:], torch.zeros(2, 2))
    torch.testing.assert_close(jac[0, :3], torch.full((3,), 2.0))


def test_saliency_equals_loop_and_keeps_graph(model, batch):
    out, losses = tiny_losses(model, batch)
    stacked = torch.stack(list(losses.values()))
    z = out.representation
    sal = G.saliency(stacked, z, create_graph=True, vectorize=True)
    loop = torch.stack([torch.autograd.grad(l, z, retain_graph=True)[0] for l in losses.values()])
    assert sal.shape == (2, *z.shape)
    torch.testing.assert_close(sal, loop)
    assert sal.requires_grad  # differentiable for the regularizers
    torch.testing.assert_close(G.saliency(stacked, z, vectorize=False), loop)


def test_saliency_multi_input_uses_each_tasks_own_representation():
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    z = [torch.randn(2, 3) * w, torch.randn(2, 3) * w]
    losses = torch.stack([(z[0] ** 2).sum(), (3 * z[1]).sum()])
    sal = G.saliency(losses, z)
    torch.testing.assert_close(sal[0], 2 * z[0].detach())
    torch.testing.assert_close(sal[1], torch.full((2, 3), 3.0))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 17])
def test_gramian_sums_column_chunks_of_every_block_exactly(monkeypatch, chunk):
    monkeypatch.setattr(G, "GRAMIAN_CHUNK", chunk)
    g = torch.Generator().manual_seed(0)
    blocks = [torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)]
    whole = torch.cat(blocks, dim=1)
    torch.testing.assert_close(G.gramian(*blocks), whole @ whole.T)
    torch.testing.assert_close(G.gramian(whole), whole @ whole.T)
    leaf = whole.clone().requires_grad_(True)
    G.gramian(leaf).trace().backward()  # d tr(J Jᵀ) / dJ = 2J
    torch.testing.assert_close(leaf.grad, 2 * whole)
    with pytest.raises(ValueError, match="at least one"):
        G.gramian()


def test_gramian_and_unflatten_roundtrip():
    jac = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])
    torch.testing.assert_close(G.gramian(jac), torch.tensor([[5.0, 2.0], [2.0, 2.0]]))
    params = [torch.zeros(2, 1), torch.zeros(1)]
    parts = G.unflatten_like(torch.arange(3.0), params)
    assert [p.shape for p in parts] == [(2, 1), (1,)]
    with pytest.raises(ValueError, match="entries"):
        G.unflatten_like(torch.arange(4.0), params)


def test_leaves_between_stops_at_representation(model, batch):
    out, losses = tiny_losses(model, batch)
    heads = G.leaves_between(list(losses.values()), stop=[out.representation])
    assert {id(p) for p in heads} == {id(p) for p in model.task_parameters()}
    encoder = G.leaves_between([out.representation], stop=[])
    assert {id(p) for p in encoder} == {id(p) for p in model.shared_parameters()}


def test_auto_vectorisation_picks_the_loop_on_cpu():
    assert not G.use_vmap(None, torch.zeros(1))
    assert G.use_vmap(None, torch.zeros(1, device="meta"))
    assert G.use_vmap(True, torch.zeros(1)) and not G.use_vmap(False, torch.zeros(1, device="meta"))
