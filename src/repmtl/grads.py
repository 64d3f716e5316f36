"""Per-task Jacobians and Gramians, at parameter level or at representation level.

Notation: ``docs/formulas.md#notation``.

The ``T`` task gradients come either from **one** vectorised autograd call
(``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``vmap`` over the backward pass) or
from ``T`` backward passes in a python loop. ``vectorize=None`` (the default) picks ``vmap`` on
accelerators, where it replaces ``T`` rounds of small kernel launches by one, and the loop on
the CPU, where ``benchmarks/grads.py`` measured ``vmap`` 1.0–2× *slower* than the loop (its
batching rules for convolution and batch-norm backward do not beat ``T`` plain passes there).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch.autograd.graph import Node

__all__ = [
    "flatten_grads",
    "gramian",
    "leaves_between",
    "parameter_jacobian",
    "representation_jacobian",
    "saliency",
    "unflatten_like",
]


def use_vmap(vectorize: bool | None, like: torch.Tensor) -> bool:
    """Resolve ``vectorize=None`` to the faster path for ``like``'s device (module doc)."""
    return like.device.type != "cpu" if vectorize is None else vectorize


def flatten_grads(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor], rows: int) -> torch.Tensor:
    """Concatenate per-parameter batched gradients ``(rows, *p.shape)`` into ``(rows, d)``;
    ``None`` (a parameter the losses do not reach) becomes zeros."""
    flat = [
        g.reshape(rows, -1) if g is not None else p.new_zeros(rows, p.numel())
        for g, p in zip(grads, params, strict=True)
    ]
    return torch.cat(flat, dim=1)


def unflatten_like(vector: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat ``(d,)`` vector into tensors shaped like ``params``."""
    sizes = [p.numel() for p in params]
    if vector.numel() != sum(sizes):
        raise ValueError(f"vector has {vector.numel()} entries, parameters hold {sum(sizes)}")
    return [chunk.view_as(p) for chunk, p in zip(vector.split(sizes), params, strict=True)]


Losses = torch.Tensor | Sequence[torch.Tensor]


def _terms(losses: Losses) -> list[torch.Tensor]:
    """Per-task scalar losses. Prefer passing the separate tensors: a backward started from an
    element of a *stacked* tensor also traverses every other task's head (with zero gradients),
    ``T`` times the heads' work; from the separate tensors each pass meets only its own head."""
    if isinstance(losses, torch.Tensor):
        return list(losses.reshape(-1).unbind())
    terms = list(losses)
    if not terms:
        raise ValueError("need at least one loss")
    return terms


def _batched_grad(terms: list[torch.Tensor], inputs: Sequence[torch.Tensor], create_graph: bool):
    """All ``T`` rows of the task Jacobian w.r.t. ``inputs`` from one ``vmap`` backward."""
    eye = torch.eye(len(terms), dtype=terms[0].dtype, device=terms[0].device)
    return torch.autograd.grad(
        terms,
        inputs,
        grad_outputs=[eye[t].reshape(len(terms), *terms[t].shape) for t in range(len(terms))],
        is_grads_batched=True,
        retain_graph=True,
        create_graph=create_graph,
        allow_unused=True,
    )


def parameter_jacobian(
    losses: Losses,
    params: Sequence[torch.Tensor],
    *,
    create_graph: bool = False,
    vectorize: bool | None = None,
) -> torch.Tensor:
    """``J = [∇θ L_1 … ∇θ L_T]ᵀ`` of shape ``(T, d)`` for ``T`` scalar losses (separate tensors,
    or stacked ``(T,)``). The graph is kept for the step's final backward."""
    params = list(params)
    if not params:
        raise ValueError("parameter_jacobian needs at least one parameter")
    terms = _terms(losses)
    if use_vmap(vectorize, terms[0]):
        return flatten_grads(_batched_grad(terms, params, create_graph), params, len(terms))
    rows = []
    for term in terms:
        grads = torch.autograd.grad(term, params, retain_graph=True, create_graph=create_graph, allow_unused=True)
        rows.append(flatten_grads(grads, params, 1))
    return torch.cat(rows, dim=0)


def saliency(
    losses: Losses,
    representation: torch.Tensor | Sequence[torch.Tensor],
    *,
    create_graph: bool = False,
    vectorize: bool | None = None,
) -> torch.Tensor:
    """Task saliency ``S_t = ∂L_t/∂Z`` stacked to ``(T, *Z.shape)``
    (``docs/formulas.md#rep-mtl-saliency``).

    ``losses``: ``T`` scalar losses (separate tensors, or stacked ``(T,)``). ``representation``
    is one tensor ``Z`` shared by all tasks, or a sequence of ``T`` tensors ``Z_t``
    (multi-input data: ``L_t`` depends on ``Z_t`` only). In the multi-input case one backward of
    ``Σ_t L_t`` yields every ``∂L_t/∂Z_t`` at once, since the tasks' graphs are disjoint above
    the encoder; the ``Z_t`` must then share one shape. With ``create_graph=True`` the result
    is differentiable (for Rep-MTL's regularisers).
    """
    terms = _terms(losses)
    if isinstance(representation, torch.Tensor):
        if use_vmap(vectorize, terms[0]):
            (grad,) = _batched_grad(terms, [representation], create_graph)
            return grad if grad is not None else representation.new_zeros(len(terms), *representation.shape)
        rows = [
            torch.autograd.grad(term, representation, retain_graph=True, create_graph=create_graph, allow_unused=True)[0]
            for term in terms
        ]
        return torch.stack([r if r is not None else torch.zeros_like(representation) for r in rows])
    reps = list(representation)
    if len(reps) != len(terms):
        raise ValueError(f"{len(terms)} losses but {len(reps)} representations")
    shapes = {tuple(z.shape) for z in reps}
    if len(shapes) != 1:
        raise ValueError(f"per-task representations must share one shape to be stacked, got {sorted(shapes)}")
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    grads = torch.autograd.grad(total, reps, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return torch.stack([g if g is not None else torch.zeros_like(z) for g, z in zip(grads, reps)])


def representation_jacobian(saliencies: torch.Tensor) -> torch.Tensor:
    """Batch-flattened representation-level Jacobian ``(T, B·C·H·W)`` from saliencies."""
    return saliencies.reshape(saliencies.shape[0], -1)


def gramian(jacobian: torch.Tensor) -> torch.Tensor:
    """``K = J Jᵀ`` (``T×T``)."""
    return jacobian @ jacobian.T


def leaves_between(roots: Iterable[torch.Tensor], stop: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Leaf tensors that require grad and are reached from ``roots`` without passing through
    the autograd nodes of ``stop`` (e.g. head parameters: reached from the losses without
    crossing the shared representation). Order: first visit, depth first."""
    stop_nodes = {z.grad_fn for z in stop if z.grad_fn is not None}
    stop_leaves = {id(z) for z in stop if z.grad_fn is None}
    seen: set[Node] = set()
    leaves: list[torch.Tensor] = []
    stack = [r.grad_fn for r in roots if r.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen or node in stop_nodes:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None:
            if id(variable) not in stop_leaves:
                leaves.append(variable)
            continue
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves
