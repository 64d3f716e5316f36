"""Per-task Jacobians and Gramians, at parameter level or at representation level.

Notation: ``docs/formulas.md#notation``.

The ``T`` task gradients come either from **one** vectorised autograd call
(``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``vmap`` over the backward pass) or
from ``T`` backward passes in a python loop.

Parameter level (:func:`task_jacobian`): which path is faster depends on the device *and* the
model. On accelerators ``vmap`` replaces ``T`` rounds of small kernel launches by one
(``vectorize=None`` picks it there). On the CPU ``vectorize=None`` is the loop: ``repmtl bench``
measured (process CPU time, 1 thread) ``vmap`` up to 2× *slower* than the loop with
convolutions (the synthscenes CNN, T = 8: 4.1 vs 2.1 EW-steps) and 3.1× slower on the QM9
MPNN (GRU and message-passing scatters, T = 11: 4.6 vs 1.5 CPU-s per MGDA step, the loop at
the floor of 11 task backwards), and ahead only on plain matrix-product encoders (MLP, T = 8:
4.8 vs 6.1 EW-steps). No rule on parameter shapes tells these apart, so the robust path is the
default; ``vectorize=True`` forces ``vmap``, and ``vectorize="auto"`` times both paths on the
first call for each model signature (parameter shapes, ``T``, device) and keeps the faster one
for the process (the choice is a timing, so two processes may choose differently).

Representation level (:func:`saliency`): ``vectorize=None`` is ``vmap`` on accelerators and
the loop on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch.autograd.graph import GradientEdge, Node

__all__ = [
    "TaskJacobian",
    "accumulate_direction",
    "accumulate_grads",
    "check_weights",
    "clear_measured_vectorize",
    "disjoint_heads",
    "flatten_grads",
    "gramian",
    "jacobian_uses_vmap",
    "last_layer_parameters",
    "leaves_between",
    "measured_vectorize_choices",
    "parameter_jacobian",
    "reaches",
    "representation_jacobian",
    "saliency",
    "saliency_and_task_grads",
    "task_jacobian",
    "unflatten_like",
    "widest_dtype",
]


Vectorize = bool | None | Literal["auto"]


def use_vmap(vectorize: bool | None, like: torch.Tensor) -> bool:
    """Representation level: resolve ``vectorize=None`` to the faster path for ``like``'s device."""
    return like.device.type != "cpu" if vectorize is None else vectorize


def jacobian_uses_vmap(vectorize: bool | None, params: Sequence[torch.Tensor]) -> bool:
    """Parameter level: resolve ``vectorize=None`` from the device (module doc: ``vmap`` on
    accelerators, the loop on the CPU)."""
    if vectorize is not None:
        return bool(vectorize)
    return params[0].device.type != "cpu"


#: ``vectorize="auto"``: the measured choice per (device, dtype, parameter shapes, T, number of edges)
_MEASURED: dict[tuple, bool] = {}


def measured_vectorize_choices() -> dict[tuple, bool]:
    """The choices ``vectorize="auto"`` measured so far (key: device, dtype, shapes, T, edges)."""
    return dict(_MEASURED)


def clear_measured_vectorize() -> None:
    """Forget the ``vectorize="auto"`` measurements (e.g. after moving the model)."""
    _MEASURED.clear()


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


def _batched_grad(terms: list[torch.Tensor], inputs: Sequence[torch.Tensor], create_graph: bool, retain_graph: bool = True):
    """All ``T`` rows of the task Jacobian w.r.t. ``inputs`` from one ``vmap`` backward."""
    eye = torch.eye(len(terms), dtype=terms[0].dtype, device=terms[0].device)
    return torch.autograd.grad(
        terms,
        inputs,
        grad_outputs=[eye[t].reshape(len(terms), *terms[t].shape) for t in range(len(terms))],
        is_grads_batched=True,
        retain_graph=retain_graph,
        create_graph=create_graph,
        allow_unused=True,
    )


class TaskJacobian:
    """The parameter-level task Jacobian ``J`` (``T×d``) of one step, kept in the form it was
    built in so that nothing downstream copies it again.

    ``blocks[i]`` is ``∂L/∂θ_i`` of shape ``(T, *θ_i.shape)``. After the python loop the blocks
    are views of one preallocated ``(T, d)`` buffer (:attr:`flat`), into which each task's
    backward wrote its row; after a ``vmap`` backward they are autograd's own batched tensors and
    no ``(T, d)`` copy exists until :meth:`matrix` asks for one. The Gramian (:meth:`gramian`)
    and the combined update ``Jᵀα`` (:meth:`accumulate`) work from either form without it.
    """

    def __init__(
        self,
        blocks: Sequence[torch.Tensor],
        params: Sequence[torch.Tensor],
        flat: torch.Tensor | None = None,
        task_grads: Sequence[Sequence[torch.Tensor | None]] = (),
        edge_grads: Sequence[torch.Tensor | None] = (),
        num_tasks: int | None = None,
    ):
        self.blocks = tuple(blocks)
        self.params = tuple(params)
        self.flat = flat
        #: ``task_grads[t]``: ``∂L_t`` w.r.t. ``task_inputs[t]`` of :func:`task_jacobian` (``None``: unreached)
        self.task_grads = tuple(tuple(g) for g in task_grads)
        #: ``edge_grads[e]``: ``(T, *shape)``, every task's gradient at ``edges[e]`` of
        #: :func:`task_jacobian` (``None``: no task reaches it)
        self.edge_grads = tuple(edge_grads)
        if num_tasks is None:
            if not self.blocks:
                raise ValueError("a TaskJacobian without parameter blocks needs num_tasks")
            num_tasks = self.blocks[0].shape[0]
        self._num_tasks = num_tasks

    @property
    def num_tasks(self) -> int:
        return self._num_tasks

    def matrix(self) -> torch.Tensor:
        """``J`` as one ``(T, d)`` tensor: the buffer itself after the loop, one copy after ``vmap``."""
        if self.flat is None:
            return torch.cat([b.reshape(self.num_tasks, -1) for b in self.blocks], dim=1)
        return self.flat

    def gramian(self) -> torch.Tensor:
        """``K = J Jᵀ`` (``T×T``), from the flat buffer or, when none exists, as ``Σ_i B_i B_iᵀ``
        over the parameter blocks (no ``T×d`` copy); both in column chunks (:func:`gramian`)."""
        if self.flat is not None:
            return gramian(self.flat)
        return gramian(*(b.reshape(self.num_tasks, -1) for b in self.blocks))

    def parameter_gramians(self) -> torch.Tensor:
        """``K_i = B_i B_iᵀ`` for every parameter block (``P × T × T``, :attr:`params` order)."""
        return torch.stack([gramian(b.reshape(self.num_tasks, -1)) for b in self.blocks])

    def combine(self, weights: torch.Tensor) -> list[torch.Tensor]:
        """``Jᵀα`` split per parameter: ``Σ_t α_t ∂L_t/∂θ_i`` shaped like each ``θ_i``; with
        ``weights`` of shape ``P × T``, one ``α`` per parameter (``Σ_t α_{i,t} ∂L_t/∂θ_i``)."""
        weights = check_weights(weights, len(self.params), self.num_tasks)
        if weights.ndim == 1 and self.flat is not None:
            return unflatten_like(weights.to(self.flat.dtype) @ self.flat, self.params)
        rows = weights.expand(len(self.params), -1) if weights.ndim == 1 else weights
        return [torch.tensordot(row.to(block.dtype), block, dims=1) for row, block in zip(rows, self.blocks, strict=True)]

    def accumulate(self, weights: torch.Tensor) -> None:
        """Add :meth:`combine` to the parameters' ``.grad``: the update of ``Σ_t α_t L_t`` on the
        shared parameters, without the further encoder backward that would recompute it."""
        accumulate_grads(self.params, self.combine(weights.detach()))


def check_weights(weights: torch.Tensor, num_params: int, num_tasks: int) -> torch.Tensor:
    """``weights`` as a combination of a Jacobian's rows accepts: ``T``, or ``P × T``."""
    if tuple(weights.shape) not in ((num_tasks,), (num_params, num_tasks)):
        raise ValueError(
            f"expected {num_tasks} weights or {num_params} × {num_tasks} (one row per parameter), "
            f"got shape {tuple(weights.shape)}"
        )
    return weights


def accumulate_grads(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
    """``p.grad += g`` (or ``p.grad = g`` when unset) for freshly computed, detached ``grads``.
    An unset ``.grad`` takes ``g`` itself, not a copy; ``g`` must not be referenced elsewhere."""
    for param, grad in zip(params, grads, strict=True):
        if grad.shape != param.shape:
            raise ValueError(f"gradient of shape {tuple(grad.shape)} for a parameter of shape {tuple(param.shape)}")
        grad = grad.detach().to(param.dtype)
        if param.grad is None:
            param.grad = grad
        else:
            param.grad.add_(grad)


def accumulate_direction(direction: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
    """Add a flat ``(d,)`` update (a parameter-level method's direction) to the parameters'
    ``.grad``. An unset ``.grad`` gets a copy, so the caller may keep ``direction`` (methods' state)."""
    for param, chunk in zip(params, unflatten_like(direction.detach(), params), strict=True):
        if param.grad is None:
            param.grad = chunk.to(param.dtype, copy=True)
        else:
            param.grad.add_(chunk.to(param.dtype))


def widest_dtype(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    """The dtype all of ``tensors`` promote to (``J``'s for mixed-dtype parameters)."""
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def task_jacobian(
    losses: Losses,
    params: Sequence[torch.Tensor],
    *,
    create_graph: bool = False,
    vectorize: Vectorize = None,
    task_inputs: Sequence[Sequence[torch.Tensor]] | None = None,
    keep_graph: bool = True,
    edges: Sequence[GradientEdge] = (),
) -> TaskJacobian:
    """The task Jacobian over ``params`` as a :class:`TaskJacobian` (graph kept).

    ``task_inputs[t]`` (optional): further tensors, typically task ``t``'s head parameters, whose
    gradient of ``L_t`` alone is wanted; the loop gets them from the same backward as ``J``'s
    row ``t`` (no further pass through the heads), ``vmap`` from one head-only pass per task.

    ``edges`` (optional): autograd edges (e.g. a layer's output) at which every task's gradient
    is wanted too, from the same passes; kept as ``(T, *shape)`` in :attr:`TaskJacobian.edge_grads`.
    ``params`` may then be empty.

    ``keep_graph=False``: the last backward frees the graph's buffers as it runs (a lower peak,
    as in a plain ``backward``), for callers that differentiate nothing through it afterwards.

    Loop: one backward per task, each writing its gradients straight into its row of a
    preallocated ``(T, d)`` buffer (peak: ``J`` plus one task's gradients). ``vmap``: one
    batched backward whose per-parameter outputs are kept as they are (peak: ``J``).
    ``vectorize``: ``True`` (vmap), ``False`` (loop), ``None`` (by device and parameter shapes),
    ``"auto"`` (measured once per model signature); see the module doc.
    """
    params, edges = list(params), list(edges)
    if not params and not edges:
        raise ValueError("task_jacobian needs at least one parameter or edge")
    terms = _terms(losses)
    extra = [list(x) for x in task_inputs] if task_inputs is not None else [[] for _ in terms]
    if len(extra) != len(terms):
        raise ValueError(f"{len(terms)} losses but task_inputs for {len(extra)} tasks")
    if vectorize == "auto":
        return _measured_jacobian(terms, params, create_graph, extra, keep_graph, edges)
    if vectorize not in (None, True, False):
        raise ValueError(f"vectorize must be True, False, None or 'auto', got {vectorize!r}")
    vmap = jacobian_uses_vmap(vectorize, params) if params else use_vmap(vectorize, terms[0])
    return _jacobian(terms, params, create_graph, vmap, extra, keep_graph, edges)


def _measured_jacobian(
    terms: list[torch.Tensor],
    params: list[torch.Tensor],
    create_graph: bool,
    extra: list[list[torch.Tensor]],
    keep_graph: bool,
    edges: list[GradientEdge],
) -> TaskJacobian:
    """``vectorize="auto"``: the first call for a model signature builds ``J`` both ways, timed
    (process CPU time on the CPU, synchronised wall time on accelerators), and keeps the faster."""
    device = params[0].device if params else terms[0].device
    shapes = tuple(tuple(p.shape) for p in params)
    key = (str(device), str(widest_dtype(params)) if params else "", shapes, len(terms), len(edges))
    if key in _MEASURED:
        return _jacobian(terms, params, create_graph, _MEASURED[key], extra, keep_graph, edges)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    timings: dict[bool, float] = {}
    result: dict[bool, TaskJacobian] = {}
    for vmap in (False, True, False, True):  # two of each: the first call of a path pays its set-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        result[vmap] = _jacobian(terms, params, create_graph, vmap, extra, True, edges)  # both paths need the graph
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings[vmap] = clock() - start
    _MEASURED[key] = timings[True] < timings[False]
    return result[_MEASURED[key]]


def _jacobian(
    terms: list[torch.Tensor],
    params: list[torch.Tensor],
    create_graph: bool,
    vmap: bool,
    extra: list[list[torch.Tensor]],
    keep_graph: bool = True,
    edges: Sequence[GradientEdge] = (),
) -> TaskJacobian:
    num_tasks = len(terms)
    if vmap:
        grads = _batched_grad(terms, [*params, *edges], create_graph, retain_graph=keep_graph or any(extra))
        blocks = [
            g if g is not None else p.new_zeros(num_tasks, *p.shape)
            for g, p in zip(grads[: len(params)], params, strict=True)
        ]
        task_grads = [
            torch.autograd.grad(term, inputs, retain_graph=True, create_graph=create_graph, allow_unused=True)
            if inputs else ()
            for term, inputs in zip(terms, extra, strict=True)
        ]
        return TaskJacobian(blocks, params, task_grads=task_grads, edge_grads=grads[len(params):], num_tasks=num_tasks)
    sizes = [p.numel() for p in params]
    # Uninitialised: every entry is written below (a zeroed buffer would cost one more pass over J).
    flat = (params[0] if params else terms[0]).new_empty(
        num_tasks, sum(sizes), dtype=widest_dtype(params) if params else terms[0].dtype
    )
    blocks = [chunk.view(num_tasks, *p.shape) for chunk, p in zip(flat.split(sizes, dim=1), params, strict=True)]
    task_grads, at_edges = [], []
    for t, (term, inputs) in enumerate(zip(terms, extra, strict=True)):
        grads = torch.autograd.grad(
            term, [*params, *edges, *inputs], retain_graph=keep_graph or t < num_tasks - 1,
            create_graph=create_graph, allow_unused=True,
        )
        for block, grad in zip(blocks, grads[: len(params)], strict=True):
            if grad is None:  # a parameter this loss does not reach
                block[t].zero_()
            else:
                block[t].copy_(grad)
        at_edges.append(grads[len(params): len(params) + len(edges)])
        task_grads.append(grads[len(params) + len(edges):])
    edge_grads = [_stack_present([row[e] for row in at_edges]) for e in range(len(edges))]
    return TaskJacobian(blocks, params, flat, task_grads, edge_grads, num_tasks=num_tasks)


def _stack_present(rows: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """Stack per-task gradients, zeros for a task that does not reach them; ``None`` if none does."""
    like = next((r for r in rows if r is not None), None)
    if like is None:
        return None
    return torch.stack([r if r is not None else torch.zeros_like(like) for r in rows])


def parameter_jacobian(
    losses: Losses,
    params: Sequence[torch.Tensor],
    *,
    create_graph: bool = False,
    vectorize: Vectorize = None,
) -> torch.Tensor:
    """``J = [∇θ L_1 … ∇θ L_T]ᵀ`` of shape ``(T, d)`` for ``T`` scalar losses (separate tensors,
    or stacked ``(T,)``). The graph is kept for the step's final backward. See
    :func:`task_jacobian` for the form that avoids the ``(T, d)`` copy after ``vmap``."""
    return task_jacobian(losses, params, create_graph=create_graph, vectorize=vectorize).matrix()


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
        return _looped_saliency(terms, representation, [[] for _ in terms], create_graph)[0]
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


def saliency_and_task_grads(
    losses: Losses, representation: torch.Tensor, task_inputs: Sequence[Sequence[torch.Tensor]]
) -> tuple[torch.Tensor, list[tuple[torch.Tensor | None, ...]]]:
    """:func:`saliency` for one shared ``Z`` by the loop, each task's pass also giving
    ``∂L_t`` w.r.t. ``task_inputs[t]`` (its head's parameters: no further pass through the heads).
    The graph is kept for the encoder's backward."""
    terms = _terms(losses)
    if len(task_inputs) != len(terms):
        raise ValueError(f"{len(terms)} losses but task_inputs for {len(task_inputs)} tasks")
    return _looped_saliency(terms, representation, task_inputs, create_graph=False)


def _looped_saliency(
    terms: list[torch.Tensor], representation: torch.Tensor, task_inputs: Sequence[Sequence[torch.Tensor]],
    create_graph: bool,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor | None, ...]]]:
    """One backward per task to ``Z`` (and to ``task_inputs[t]``), the graph kept."""
    rows, task_grads = [], []
    for term, inputs in zip(terms, task_inputs, strict=True):
        found = torch.autograd.grad(
            term, [representation, *inputs], retain_graph=True, create_graph=create_graph, allow_unused=True
        )
        rows.append(found[0] if found[0] is not None else torch.zeros_like(representation))
        task_grads.append(found[1:])
    return torch.stack(rows), task_grads


def representation_jacobian(saliencies: torch.Tensor) -> torch.Tensor:
    """Batch-flattened representation-level Jacobian ``(T, B·C·H·W)`` from saliencies."""
    return saliencies.reshape(saliencies.shape[0], -1)


#: columns per product in :func:`gramian` (2¹⁷: 0.5 MiB per fp32 row)
GRAMIAN_CHUNK = 1 << 17


def gramian(*blocks: torch.Tensor) -> torch.Tensor:
    """``K = J Jᵀ`` (``T×T``) for ``J = [B_1 … B_n]``, the column blocks given (one or more
    ``(T, d_i)`` tensors), summed over column chunks of :data:`GRAMIAN_CHUNK`.

    Why chunks: the CPU BLAS picks a poor kernel for some very skinny products; one
    ``8 × 985k`` product measured 10–22 ms against 5–9 ms for the same sum over 128k-column
    chunks (process CPU time, 1 thread; ``benchmarks/gramian.py``), while at ``T = 2`` and
    ``T ≥ 16`` the two are within 0.3 ms of each other. Differentiable when ``J`` requires grad.
    """
    if not blocks:
        raise ValueError("gramian needs at least one (T, d) block")
    chunks = [b[:, start:start + GRAMIAN_CHUNK] for b in blocks for start in range(0, b.shape[1], GRAMIAN_CHUNK)]
    if not chunks:  # no columns at all (a parameter with zero elements): K = 0
        return blocks[0].new_zeros(blocks[0].shape[0], blocks[0].shape[0])
    gram = chunks[0] @ chunks[0].T
    for chunk in chunks[1:]:
        gram = gram + chunk @ chunk.T if gram.requires_grad or chunk.requires_grad else gram.addmm_(chunk, chunk.T)
    return gram


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


def reaches(root: torch.Tensor, targets: Sequence[torch.Tensor]) -> bool:
    """Whether autograd can trace ``root`` back to one of ``targets``. Edges are ``(node, output
    index)`` pairs, so a sibling output of the node that made a target does not count."""
    edges_to = {(z.grad_fn, z.output_nr) for z in targets if z.grad_fn is not None}
    leaf_ids = {id(z) for z in targets if z.grad_fn is None}
    edges, seen = [(root.grad_fn, root.output_nr)], set()
    while edges:
        node, index = edges.pop()
        if node is None:
            continue
        if (node, index) in edges_to:
            return True
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) in leaf_ids:
            return True
        if node not in seen:
            seen.add(node)
            edges.extend(node.next_functions)
    return False


def disjoint_heads(terms: Sequence[torch.Tensor], stop: Sequence[torch.Tensor]) -> list[list[torch.Tensor]] | None:
    """Each task's head parameters (leaves reached from ``L_t`` without crossing ``stop``), or
    ``None`` when a parameter serves several tasks (then no single task's pass gives its gradient)."""
    heads = [leaves_between([term], stop=stop) for term in terms]
    ids = [id(p) for head in heads for p in head]
    return heads if len(ids) == len(set(ids)) else None


def last_layer_parameters(reps: Sequence[torch.Tensor], shared: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The shared parameters of the layer closest to ``Z``: breadth-first from ``Z``, the first
    autograd node holding a ≥2-D shared parameter, with its other parameters and the 1-D ones
    (norm affines, biases) met on the way."""
    shared_ids = {id(p) for p in shared}
    frontier = [z.grad_fn for z in reps if z.grad_fn is not None]
    seen: set = set()
    picked: list[torch.Tensor] = []
    while frontier:
        following = []
        for node in frontier:
            if node is None or node in seen:
                continue
            seen.add(node)
            leaves = [
                f.variable for f, _ in node.next_functions
                if f is not None and getattr(f, "variable", None) is not None and id(f.variable) in shared_ids
            ]
            for leaf in leaves:
                if all(leaf is not q for q in picked):
                    picked.append(leaf)
            if any(leaf.ndim >= 2 for leaf in leaves):
                return picked
            following.extend(f for f, _ in node.next_functions if f is not None and getattr(f, "variable", None) is None)
        frontier = following
    if not picked:
        raise ValueError("found no shared parameter behind the representation for level 'last_layer'")
    return picked
