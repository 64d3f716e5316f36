"""Prototype of the exact parameter-level Gramian path of :func:`repmtl.backward` that applies
``Jᵀα`` from the Jacobian in hand instead of a further encoder backward.

For a method with ``needs = "gramian"`` and ``scope = "all"`` the shared parameters' update is
``Σ_t α_t ∇θ L_t = Jᵀα`` (e.g. UPGrad, Quinton & Rey, arXiv 2406.16232, Sec. 3: the aggregate
``Jᵀα``; MGDA, Sener & Koltun, NeurIPS 2018, eq. 3: ``Σ_t α_t ∇θ L_t`` with the min-norm ``α``). ``J`` is built anyway to form the
Gramian, so writing ``Jᵀα`` into ``.grad`` (:meth:`repmtl.grads.TaskJacobian.accumulate`) is
exact and saves the backward of ``Σ α_t L_t`` through the encoder; the heads get
``∇(Σ w_t L_t)`` (``w`` = the method's head weights) from a backward that stops at ``Z``.

The bench times it as ``<method>@param+jta`` next to the current path; the library's
``backward`` is to adopt it. Regularizers and the last-layer scope (whose ``α`` comes from a
sub-Jacobian but updates every shared parameter) are out of its scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from repmtl import grads as G
from repmtl.methods.base import Method


def gramian_backward_jta(
    losses: Mapping[str, torch.Tensor],
    *,
    representation: torch.Tensor,
    shared_params: Sequence[torch.Tensor],
    method: Method,
    vectorize: G.Vectorize = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Accumulate one step's gradients like ``repmtl.backward(..., level="parameters")`` for a
    Gramian method without regularizers, applying ``Jᵀα`` directly. Returns ``α`` (detached).

    When every head parameter belongs to one task only, task ``t``'s head gradient ``∂L_t/∂φ_t``
    comes from the same backward as ``J``'s row ``t``, and the heads get ``w_t ∂L_t/∂φ_t``
    (exact: ``L_s`` does not depend on ``φ_t``); otherwise one backward of ``Σ w_t L_t`` that
    stops at ``Z``. The method's own parameters (e.g. IMTL's scales) get theirs from that sum,
    which does not traverse the heads."""
    if method.needs != "gramian" or method.scope != "all":
        raise ValueError(f"method {method.name!r} is not a whole-encoder Gramian method (needs, scope)")
    names = tuple(losses)
    method.bind(names)
    raw = [losses[n].reshape(()) for n in names]
    terms = [torch.log(t + eps) for t in raw] if method.loss_transform == "log" else raw
    task_losses = torch.stack(terms)
    heads = [G.leaves_between([term], stop=[representation]) for term in terms]
    disjoint = len({id(p) for h in heads for p in h}) == sum(len(h) for h in heads)
    # Nothing is differentiated through the passes afterwards when the heads come from them: the
    # last one may free the graph as it goes (as a plain backward does), which lowers the peak.
    jacobian = G.task_jacobian(
        terms, shared_params, vectorize=vectorize, task_inputs=heads if disjoint else None, keep_graph=not disjoint
    )
    weights = method.weights(jacobian.gramian(), task_losses.detach())
    head_weights = method.head_weights(weights)
    head_part = (head_weights * task_losses).sum()
    extra = method.extra_loss()
    if extra is not None:
        head_part = head_part + extra
    leaves = G.leaves_between([head_part], stop=[representation])
    if disjoint:
        factors = head_weights.detach()
        for t, (params, grads) in enumerate(zip(heads, jacobian.task_grads, strict=True)):
            # autograd's fresh head gradients, scaled in place: no second copy of the heads' gradients
            reached = [(p, g.mul_(factors[t])) for p, g in zip(params, grads, strict=True) if g is not None]
            G.accumulate_grads([p for p, _ in reached], [g for _, g in reached])
        head_ids = {id(p) for h in heads for p in h}
        leaves = [p for p in leaves if id(p) not in head_ids]  # what is left: the method's own
    if leaves:
        grads = torch.autograd.grad(head_part, leaves, allow_unused=True)
        G.accumulate_grads([p for p, g in zip(leaves, grads) if g is not None], [g for g in grads if g is not None])
    jacobian.accumulate(weights.detach())
    return weights.detach()
