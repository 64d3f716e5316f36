"""The linear layers' share of the parameter-level Gramian from each layer's input and output
gradients, without forming their ``T`` weight gradients (``docs/formulas.md#methods-linear-layer-gramian``).

A linear layer ``Y = X Wᵀ + b`` seen by ``N`` rows (a batch, or batch × tokens) has task
gradients ``∂L_t/∂W = D_tᵀ X`` and ``∂L_t/∂b = D_tᵀ 1`` with ``D_t = ∂L_t/∂Y`` (``N × out``).
Their Gramian entries follow without either weight gradient:

    ⟨D_sᵀ X, D_tᵀ X⟩ = ⟨D_s, (X Xᵀ) D_t⟩,        ⟨D_sᵀ 1, D_tᵀ 1⟩ = (1ᵀ D_s)(1ᵀ D_t)ᵀ,

and the combined update is one product, ``Σ_t α_t D_tᵀ X = (Σ_t α_t D_t)ᵀ X``. The task passes
then need only the gradients flowing *between* layers: autograd skips the ``T`` weight-gradient
products, and no ``T × d`` Jacobian is stored for these layers. In multiply-adds per layer,
direct ``T·N·in·out + T²·in·out`` against ``N²·in + T·N²·out + T²·N·out + N·in·out``: the identity
wins while ``N`` is below the layer's width (a batch of 64 through a 640 × 640 layer at
``T = 8``: 52 M against 240 M), loses for large ``N`` (tokens, pixels); :func:`linear_factors`
picks per layer.

Layers are found in the autograd graph of the losses, not by module type: an ``addmm`` / ``mm``
node whose weight operand is a shared parameter (``Wᵀ`` as ``nn.Linear`` uses it, or ``W``
itself) that the graph uses nowhere else; the input ``X`` is the tensor the node saved for its
backward (PyTorch's documented ``grad_fn._saved_*`` attributes), read only for a layer the cost
rule keeps (its shape is read first). Keeping the direct path: parameters used more than once
(tied weights, an encoder applied twice), parameters with gradient hooks (``register_hook``,
which the direct path applies to each task's gradient), and inputs saved behind saved-tensor
hooks (activation checkpointing, ``save_on_cpu``), where reading the input would re-run the
checkpointed region or copy it back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.autograd.graph import GradientEdge, Node

from repmtl import grads as G

__all__ = ["FactoredJacobian", "LinearFactor", "factored_jacobian", "linear_factors"]


@dataclass(frozen=True)
class LinearFactor:
    """One linear layer of the graph: ``Y = X W' (+ b)`` with ``W' = Wᵀ`` (``transposed``) or ``W``."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    #: ``X`` (``N × in``), the layer's input as its backward saved it
    inputs: torch.Tensor
    #: where ``∂L_t/∂Y`` flows: the ``addmm`` / ``mm`` node's output
    edge: GradientEdge
    transposed: bool

    @property
    def rows(self) -> int:
        return self.inputs.shape[0]

    @property
    def fan_out(self) -> int:
        return self.weight.shape[0] if self.transposed else self.weight.shape[1]

    def gramians(self, outputs: torch.Tensor) -> list[torch.Tensor]:
        """This layer's ``T × T`` shares of ``K`` from ``D`` (``outputs``: ``T × N × out``), one per
        parameter (weight, then bias), in at least float32 (a half-precision model's ``N × N``
        products would lose the small entries)."""
        dtype = torch.promote_types(outputs.dtype, torch.float32)
        x, outputs = self.inputs.to(dtype), outputs.to(dtype)
        flat = outputs.reshape(outputs.shape[0], -1)
        mixed = torch.matmul(x @ x.T, outputs).reshape_as(flat)  # (X Xᵀ) D_t for every t
        gram = flat @ mixed.T
        shares = [(gram + gram.T) / 2]  # exact in real arithmetic; rounding would leave it asymmetric
        if self.bias is not None:
            sums = outputs.sum(dim=1)
            shares.append(sums @ sums.T)
        return shares

    def combine(self, outputs: torch.Tensor, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``Σ_t α_t ∂L_t/∂W`` (and ``∂/∂b``), ``weights`` one ``α`` per parameter: one product
        with the weighted output gradients each."""
        x = self.inputs.to(outputs.dtype)
        mixed = torch.tensordot(weights[0].to(outputs.dtype), outputs, dims=1)  # N × out
        update = [mixed.T @ x if self.transposed else x.T @ mixed]
        if self.bias is not None:
            update.append(torch.tensordot(weights[1].to(outputs.dtype), outputs.sum(dim=1), dims=1))
        return update

    def rows_of_jacobian(self, outputs: torch.Tensor) -> list[torch.Tensor]:
        """This layer's columns of ``J``, ``(T, numel)`` per parameter (materialised on request)."""
        x = self.inputs.to(outputs.dtype)
        pattern = "tno,ni->toi" if self.transposed else "tno,ni->tio"
        rows = [torch.einsum(pattern, outputs, x).reshape(outputs.shape[0], -1)]
        if self.bias is not None:
            rows.append(outputs.sum(dim=1))
        return rows

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]


def _edges_into(terms: Sequence[torch.Tensor]) -> Counter:
    """How many graph edges point at each autograd node reached from ``terms``."""
    incoming: Counter = Counter()
    seen: set[Node] = set()
    stack = [t.grad_fn for t in terms if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for following, _ in node.next_functions:
            if following is not None:
                incoming[following] += 1
                stack.append(following)
    return incoming


def _leaf(node: Node | None, incoming: Counter, wanted: dict[int, torch.Tensor]) -> torch.Tensor | None:
    """The parameter behind ``node`` when it is one of ``wanted``, reached by this edge only, and
    without gradient hooks (``register_hook``: the direct path applies them to each task's row)."""
    variable = getattr(node, "variable", None)
    if variable is None or id(variable) not in wanted or incoming[node] != 1 or variable._backward_hooks:
        return None
    return variable


def _factor(node: Node, incoming: Counter, wanted: dict[int, torch.Tensor], num_tasks: int) -> LinearFactor | None:
    kind = type(node).__name__
    if kind == "AddmmBackward0":
        if node._saved_alpha != 1 or node._saved_beta != 1:
            return None
        (bias_fn, _), _, (weight_fn, _) = node.next_functions
    elif kind == "MmBackward0":
        bias_fn, ((weight_fn, _)) = None, node.next_functions[1]
    else:
        return None
    transposed = type(weight_fn).__name__ == "TBackward0"
    if transposed:
        if incoming[weight_fn] != 1:
            return None
        weight_fn = weight_fn.next_functions[0][0]
    weight = _leaf(weight_fn, incoming, wanted)
    if weight is None or weight.ndim != 2:
        return None
    name = "mat1" if kind == "AddmmBackward0" else "self"
    saved = getattr(node, f"_raw_saved_{name}")
    if saved.unpack_hook is not None:
        return None  # behind saved-tensor hooks (checkpointing, offloading): reading it would re-run or copy
    fan_out = weight.shape[0] if transposed else weight.shape[1]  # LinearFactor.fan_out, before X is read
    rows, fan_in = getattr(node, f"_saved_{name}_sym_sizes")
    if not _worth_it(int(rows), int(fan_in), fan_out, num_tasks):
        return None
    bias = _leaf(bias_fn, incoming, wanted)
    if bias is not None and tuple(bias.shape) != (fan_out,):
        bias = None  # broadcast in another way: it stays on the direct path
    inputs = getattr(node, f"_saved_{name}")  # read only now: a layer that qualifies
    if inputs is None:
        return None
    return LinearFactor(weight, bias, inputs.detach(), GradientEdge(node, 0), transposed)


def _worth_it(rows: int, fan_in: int, fan_out: int, num_tasks: int) -> bool:
    """Whether the identity takes fewer multiply-adds than the direct weight gradients (module doc)."""
    n, t = rows, num_tasks
    direct = t * n * fan_in * fan_out + t * t * fan_in * fan_out
    factored = n * n * fan_in + t * n * n * fan_out + t * t * n * fan_out + n * fan_in * fan_out
    return factored < direct


def linear_factors(terms: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> list[LinearFactor]:
    """The linear layers over ``params`` whose Gramian share the identity computes more cheaply
    (module doc), in graph order."""
    incoming = _edges_into(terms)
    wanted = {id(p): p for p in params}
    return [f for node in incoming if (f := _factor(node, incoming, wanted, len(terms))) is not None]


class FactoredJacobian:
    """The parameter-level task Jacobian with its linear layers held as ``(X, D_t)`` factors and
    the other parameters as a :class:`repmtl.grads.TaskJacobian`. It offers what Gramian
    weightings and segment-Gramian aggregators use, with the same interface as the
    ``TaskJacobian``: :meth:`gramian` (or one per parameter, :meth:`parameter_gramians`),
    :meth:`accumulate` (``Jᵀα``, or one ``α`` per parameter), the heads' ``task_grads``, and
    :meth:`matrix` (``J`` itself, formed on request)."""

    def __init__(self, factors: Sequence[LinearFactor], outputs: Sequence[torch.Tensor | None],
                 rest: G.TaskJacobian, params: Sequence[torch.Tensor]):
        self.factors = tuple(factors)
        self.rest = rest
        self.params = tuple(params)
        self.task_grads = rest.task_grads
        #: ``D`` per factor, ``T × N × out`` (zeros where no task reaches the layer)
        self.outputs = tuple(
            d if d is not None else f.inputs.new_zeros(rest.num_tasks, f.rows, f.fan_out)
            for f, d in zip(factors, outputs, strict=True)
        )

    @property
    def num_tasks(self) -> int:
        return self.rest.num_tasks

    def gramian(self) -> torch.Tensor:
        shares = [g for f, d in zip(self.factors, self.outputs, strict=True) for g in f.gramians(d)]
        if self.rest.params:
            shares.append(self.rest.gramian())
        dtype = G.widest_dtype(shares)
        gram = shares[0].to(dtype)
        for share in shares[1:]:
            gram = gram + share.to(dtype)
        return gram

    def parameter_gramians(self) -> torch.Tensor:
        """``K_p = J_p J_pᵀ`` for every parameter (``P × T × T``, :attr:`params` order)."""
        factor_parts = [f.gramians(d) for f, d in zip(self.factors, self.outputs, strict=True)]
        rest_parts = list(self.rest.parameter_gramians()) if self.rest.params else []
        parts = self._by_param(factor_parts, rest_parts)
        dtype = G.widest_dtype(parts)
        return torch.stack([p.to(dtype) for p in parts])

    def _by_param(self, factor_parts: list[list[torch.Tensor]], rest_parts: list[torch.Tensor]) -> list[torch.Tensor]:
        found = {id(p): part for f, parts in zip(self.factors, factor_parts, strict=True)
                 for p, part in zip(f.params, parts, strict=True)}
        found.update({id(p): part for p, part in zip(self.rest.params, rest_parts, strict=True)})
        return [found[id(p)] for p in self.params]

    def combine(self, weights: torch.Tensor) -> list[torch.Tensor]:
        """``Jᵀα`` split per parameter, in :attr:`params` order; with ``weights`` of shape
        ``P × T``, one ``α`` per parameter (as :meth:`repmtl.grads.TaskJacobian.combine`)."""
        weights = G.check_weights(weights, len(self.params), self.num_tasks)
        row = dict(zip(map(id, self.params), weights.expand(len(self.params), -1), strict=True))
        factor_parts = [
            f.combine(d, [row[id(p)] for p in f.params]) for f, d in zip(self.factors, self.outputs, strict=True)
        ]
        if not self.rest.params:
            rest_parts = []
        elif weights.ndim == 1:
            rest_parts = self.rest.combine(weights)
        else:
            rest_parts = self.rest.combine(torch.stack([row[id(p)] for p in self.rest.params]))
        return self._by_param(factor_parts, rest_parts)

    def accumulate(self, weights: torch.Tensor) -> None:
        """Add :meth:`combine` to the parameters' ``.grad``."""
        G.accumulate_grads(self.params, self.combine(weights.detach()))

    def matrix(self) -> torch.Tensor:
        """``J`` as one ``(T, d)`` tensor in :attr:`params` order (a fresh copy)."""
        factor_parts = [f.rows_of_jacobian(d) for f, d in zip(self.factors, self.outputs, strict=True)]
        rest_parts = [b.reshape(self.num_tasks, -1) for b in self.rest.blocks]
        return torch.cat(self._by_param(factor_parts, rest_parts), dim=1)


def factored_jacobian(
    terms: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    vectorize: G.Vectorize = None,
    task_inputs: Sequence[Sequence[torch.Tensor]] | None = None,
    keep_graph: bool = True,
) -> FactoredJacobian | None:
    """:func:`repmtl.grads.task_jacobian` with the linear layers factored (module doc), or
    ``None`` when no layer of ``params`` is worth it (then the caller takes the direct path)."""
    factors = linear_factors(terms, params)
    if not factors:
        return None
    covered = {id(p) for f in factors for p in f.params}
    rest = [p for p in params if id(p) not in covered]
    jacobian = G.task_jacobian(
        list(terms), rest, vectorize=vectorize, task_inputs=task_inputs, keep_graph=keep_graph,
        edges=[f.edge for f in factors],
    )
    return FactoredJacobian(factors, jacobian.edge_grads, jacobian, params)
