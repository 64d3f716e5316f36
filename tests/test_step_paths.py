"""The update paths of ``repmtl.backward`` that the model's shape decides: heads that share a
parameter (no per-task pass gives a head its gradient), and ``shared_params`` that cover only
part of the encoder (the Jacobian in hand then cannot give the whole update)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import repmtl
from repmtl import methods as M
from repmtl.methods.base import GramianWeighting, plain_heads


class Fixed(GramianWeighting):
    """Known weights; heads weighted alike or plain."""

    name = "test-fixed-paths"

    def __init__(self, alpha, plain=False):
        super().__init__()
        self.alpha, self.plain = torch.tensor(alpha, dtype=torch.float64), plain

    def weights(self, gramian, losses):
        return plain_heads(self.alpha) if self.plain else self.alpha


def _net(seed=0):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    shared_head = nn.Linear(3, 3).double()  # a parameter both tasks' heads use
    heads = nn.ModuleDict({"a": nn.Linear(3, 1).double(), "b": nn.Linear(3, 1).double()})
    return encoder, shared_head, heads


def _losses(encoder, shared_head, heads, x):
    z = encoder(x)
    h = torch.tanh(shared_head(z))
    return z, {"a": heads["a"](h).pow(2).mean(), "b": (heads["b"](h) - 1).pow(2).mean() * 3}


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("vectorize", [False, True])
def test_heads_sharing_a_parameter_get_the_weighted_sum(plain, vectorize):
    x = torch.randn(6, 4, dtype=torch.float64)
    encoder, shared_head, heads = _net()
    alpha = [0.4, 1.3]
    z, losses = _losses(encoder, shared_head, heads, x)
    repmtl.backward(losses, representation=z, method=Fixed(alpha, plain), level="parameters", vectorize=vectorize)
    got = [p.grad for p in [*encoder.parameters(), *shared_head.parameters(), *heads.parameters()]]
    twin = _net()  # same initialisation, fresh graph
    expected = _reference(twin, alpha, [1.0, 1.0] if plain else alpha, x, {id(p) for p in twin[0].parameters()})
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def _reference(net, alpha, head_alpha, x, shared_ids):
    """Per parameter: ``Σ_t w_t ∇L_t`` with ``w = alpha`` on the encoder, ``head_alpha`` above it."""
    encoder, shared_head, heads = net
    params = [*encoder.parameters(), *shared_head.parameters(), *heads.parameters()]
    _, losses = _losses(encoder, shared_head, heads, x)
    per_task = [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) for loss in losses.values()]
    out = []
    for i, p in enumerate(params):
        w = alpha if id(p) in shared_ids else head_alpha
        out.append(sum(w[t] * per_task[t][i] for t in range(2) if per_task[t][i] is not None))
    return out


@pytest.mark.parametrize("name", ["mgda", "upgrad", "nashmtl"])
def test_shared_params_covering_part_of_the_encoder(name):
    """A Gramian weighting over a subset of the encoder still updates every encoder parameter
    with ``Σ_t α_t ∇L_t`` (through ``Z``), with ``α`` from the subset's Gramian."""
    x = torch.randn(6, 4, dtype=torch.float64)
    encoder, shared_head, heads = _net()
    subset = list(encoder[2].parameters())
    method = M.create(name, tasks=["a", "b"])
    z, losses = _losses(encoder, shared_head, heads, x)
    record = repmtl.backward(losses, representation=z, method=method, shared_params=subset, level="parameters")
    alpha = record.weights
    ref_net = _net()
    _, ref_losses = _losses(*ref_net, x)
    enc = list(ref_net[0].parameters())
    per_task = [torch.autograd.grad(loss, enc, retain_graph=True) for loss in ref_losses.values()]
    for i, p in enumerate(encoder.parameters()):
        torch.testing.assert_close(p.grad, alpha[0] * per_task[0][i] + alpha[1] * per_task[1][i])
    jac = torch.stack([torch.cat([g.flatten() for g in grads[2:]]) for grads in per_task])
    torch.testing.assert_close(record.gramian, jac @ jac.T)


class CountingHead(nn.Module):
    """A head that counts how often autograd runs its backward."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1).double()
        self.backwards = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.linear(z)
        if out.requires_grad:
            out.register_hook(self._count)
        return out

    def _count(self, grad: torch.Tensor) -> None:
        self.backwards += 1


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("name", ["fixed-weights", "pcgrad"])
def test_representation_level_heads_get_their_gradient_from_the_saliency_passes(name, plain):
    """Disjoint heads at representation level: each head's backward runs once (in its saliency
    pass), and every parameter's gradient is the one the heads' extra pass gave before."""

    def run(vectorize: bool) -> tuple[list[torch.Tensor], list[int]]:
        torch.manual_seed(0)
        encoder = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
        heads = {"a": CountingHead(), "b": CountingHead()}
        x = torch.randn(6, 4, dtype=torch.float64)
        z = encoder(x)
        losses = {"a": heads["a"](z).pow(2).mean(), "b": (heads["b"](z) - 1).pow(2).mean() * 3}
        method = Fixed([0.4, 1.3], plain) if name == "fixed-weights" else M.create(name, tasks=["a", "b"])
        repmtl.backward(losses, representation=z, method=method, level="representation", vectorize=vectorize)
        params = [*encoder.parameters(), *heads["a"].parameters(), *heads["b"].parameters()]
        return [p.grad.clone() for p in params], [h.backwards for h in heads.values()]

    torch.manual_seed(1)
    looped, counts = run(vectorize=False)  # saliency passes give the heads' gradients
    torch.manual_seed(1)
    batched, _ = run(vectorize=True)  # vmap saliencies, then the heads' own pass
    assert counts == [1, 1]
    for got, want in zip(looped, batched, strict=True):
        torch.testing.assert_close(got, want)


class ScalarHead(nn.Module):
    """A linear head plus parameters whose gradients autograd returns aliased or expanded:
    ``p + q`` gives both scalars one tensor, ``extra.sum()`` a stride-0 one."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1).double()
        self.p = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
        self.q = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
        self.extra = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)

    def penalty(self) -> torch.Tensor:
        return self.p + self.q + 0.1 * self.extra.sum()


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_head_gradients_that_autograd_aliases_are_weighted_once(level):
    """A head's task gradient times its weight, also when autograd hands one tensor to two
    parameters or an expanded one (regression: scaling them in place weighted them twice, or
    raised on the expanded tensor)."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    heads = {"a": ScalarHead(), "b": ScalarHead()}
    z = encoder(torch.randn(6, 4, dtype=torch.float64))
    losses = {t: (heads[t](z) - i).pow(2).mean() + heads[t].penalty() for i, t in enumerate(heads)}
    alpha = [0.4, 1.3]
    record = repmtl.backward(losses, representation=z, method=Fixed(alpha), level=level)
    torch.testing.assert_close(record.head_weights, torch.tensor(alpha, dtype=torch.float64))
    for weight, head in zip(alpha, heads.values(), strict=True):
        torch.testing.assert_close(head.p.grad, torch.tensor(weight, dtype=torch.float64))
        torch.testing.assert_close(head.q.grad, torch.tensor(weight, dtype=torch.float64))
        torch.testing.assert_close(head.extra.grad, torch.full((3,), 0.1 * weight, dtype=torch.float64))
