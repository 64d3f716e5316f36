"""``repmtl.backward``: one multi-task optimisation step's gradients.

The data flow is described in ``docs/architecture.md`` ("One step"); the formulas in
``docs/formulas.md``.

Head parameters get their own task gradient (times the method's weight where it defines one);
shared parameters get the method's combined gradient; regularizers add their penalties. The
user's ``optimizer.step()`` stays theirs. The encoder is back-propagated **once** per call,
except that a parameter-level Jacobian or Gramian needs the ``T`` task gradients of the shared
parameters, which come from one vectorised (``vmap``) backward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from repmtl import grads as G
from repmtl import methods as M
from repmtl.methods.base import Level, Method
from repmtl.regularizers.base import Penalty, Regularizer

LossTransform = Literal["none", "log"]
Representation = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass
class BackwardRecord:
    """What one call did. Tensors are detached and stay on their device (no host sync).

    ``losses``: raw task losses. ``weights``: the ``α`` applied to the shared update (``None``
    for methods that return a direction). ``head_weights``: the weights the heads received.
    ``penalties``: regularizer values by name (before their λ). ``gramian``: ``K`` when the
    method needed it (reused by diagnostics). ``saliency``: ``S`` if ``keep_saliency``. ``multi_input``: each task had its own ``Z_t``.
    """

    tasks: tuple[str, ...]
    losses: torch.Tensor
    weights: torch.Tensor | None
    head_weights: torch.Tensor
    level: str
    penalties: dict[str, torch.Tensor] = field(default_factory=dict)
    gramian: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    info: dict[str, object] = field(default_factory=dict)
    multi_input: bool = False


def backward(
    losses: Mapping[str, torch.Tensor],
    *,
    representation: Representation | None,
    shared_params: Iterable[torch.Tensor] | None = None,
    method: Method | str = "ew",
    level: Level = "parameters",
    regularizers: Sequence[Regularizer] = (),
    loss_transform: LossTransform | None = None,
    eps: float = 1e-8,
    check_finite: bool = True,
    keep_saliency: bool = False,
    vectorize: bool | None = None,
) -> BackwardRecord:
    """Accumulate the multi-task gradients of one step into ``.grad``.

    Args:
        losses: task name -> scalar loss, computed from ``representation``.
        representation: the shared representation ``Z`` the heads were applied to, or a
            mapping task -> ``Z_t`` for multi-input data. Shared parameters must reach the
            losses only through it.
        shared_params: the encoder's parameters. Default: every trainable leaf behind
            ``representation``. A parameter-level method's Jacobian is taken over these.
        method: a :class:`Method` or a registered name (``repmtl.methods.available()``).
        level: ``"parameters"`` (task gradients of the shared parameters) or
            ``"representation"`` (task gradients of ``Z``, the ``-UB`` / fast-surrogate form).
        regularizers: penalties added to the objective (e.g. Rep-MTL's TSR and CSA).
        loss_transform: ``"log"`` uses ``log(L_t + eps)`` as the task terms (DB-MTL, IMTL,
            Nash-MTL, Rep-MTL); saliencies are then taken of the transformed terms.
            ``None``: the method's own ``loss_transform`` (``"none"`` for most).
        check_finite: raise, naming the task, on a non-finite loss (one host sync per call).
        keep_saliency: return ``S`` in the record (for diagnostics).
        vectorize: task gradients from one ``vmap`` backward (``True``) or a python loop
            (``False``); ``None`` picks per device (``repmtl.grads``: the loop on CPU).
    """
    names, raw_terms = _loss_terms(losses)
    raw = torch.stack(raw_terms)
    method = _resolve_method(method, names)
    if loss_transform is None:
        loss_transform = method.loss_transform
    elif method.requires_loss_transform and loss_transform != method.loss_transform:
        raise ValueError(
            f"method {method.name!r} defines its weights on {method.loss_transform!r}-transformed losses; "
            f"loss_transform={loss_transform!r} would silently change them"
        )
    # Separate per-task terms: a backward from one of them meets only its own head (grads._terms).
    terms = [_transform(term, loss_transform, eps) for term in raw_terms]
    task_losses = torch.stack(terms)
    if check_finite:
        _check_finite(names, raw, task_losses, loss_transform)

    method.check_level(level)
    reps, reps_arg = _representations(representation, names)
    if reps is not None:
        _check_reaches_representation(names, terms, reps)

    needs_graph = any(r.needs_saliency for r in regularizers)
    needs_representation_grads = method.needs != "losses" and level == "representation"
    if needs_representation_grads and isinstance(representation, Mapping):
        raise ValueError(
            f"method {method.name!r} at level 'representation' is undefined for multi-input data: "
            "each task has its own representation, so task gradients never share a space; "
            "use level='parameters'"
        )
    if reps is None and (
        needs_graph or needs_representation_grads or method.needs != "losses" or not method.weights_heads
    ):
        raise ValueError("this method, level or regularizer needs the shared representation; pass representation=Z")

    multi_input = isinstance(representation, Mapping)
    sal: torch.Tensor | None = None
    if needs_graph or needs_representation_grads or keep_saliency:
        if multi_input:
            _check_stackable(names, reps, regularizers, keep_saliency)
        sal = _translate_compile_errors(
            lambda: G.saliency(terms, reps_arg, create_graph=needs_graph, vectorize=vectorize)
        )
    penalties: list[Penalty] = [p for r in regularizers for p in r(sal, task_losses, multi_input=multi_input)]

    # Methods solve in at least float32: under autocast Z (and so S) may be bf16/fp16.
    detached_losses = task_losses.detach().to(_solver_dtype(task_losses))
    weights = direction = gram = None
    shared: list[torch.Tensor] | None = None
    if method.needs == "losses":
        weights = method.weights(None, detached_losses)
    else:
        if level == "parameters":
            shared = _shared_parameters(shared_params, reps)
            params = shared if method.scope == "all" else _last_layer(reps, shared)
            jac = _translate_compile_errors(lambda: G.parameter_jacobian(terms, params, vectorize=vectorize))
            segments: list[int] | None = [p.numel() for p in params]
        else:
            jac = G.representation_jacobian(sal.detach())
            jac = jac.to(_solver_dtype(jac))
            segments = None
        if method.needs == "gramian":
            gram = G.gramian(jac)
            weights = method.weights(gram, detached_losses)
        else:
            extra = {}
            if level == "representation" and method.wants_representation:
                extra["representation"] = reps[0].detach()
            direction = method.direction(jac, detached_losses, segments, **extra)
            if direction.shape != jac.shape[1:]:
                raise RuntimeError(
                    f"method {method.name!r} returned a direction of shape {tuple(direction.shape)}, "
                    f"expected {tuple(jac.shape[1:])}"
                )
    if weights is not None and weights.shape != raw.shape:
        raise RuntimeError(f"method {method.name!r} returned weights of shape {tuple(weights.shape)}, expected {tuple(raw.shape)}")

    head_weights = method.head_weights(weights) if weights is not None else torch.ones_like(raw)
    head_part = (head_weights * task_losses).sum()
    extra = method.extra_loss()
    if extra is not None:
        head_part = head_part + extra
    penalty_part: torch.Tensor | None = None
    for penalty in penalties:
        term = penalty.weight * penalty.value
        penalty_part = term if penalty_part is None else penalty_part + term

    if direction is None and head_weights is weights:
        # The objective's own gradient is the method's update everywhere: one plain backward.
        objective = head_part if penalty_part is None else head_part + penalty_part
        objective.backward()
    else:
        encoder_grad = _apply_split(
            head_part, penalty_part, reps, shared_params, method, level,
            weights.detach() if weights is not None else None, direction, sal, terms, shared, vectorize,
        )
        if encoder_grad is not None:
            torch.autograd.backward(reps, encoder_grad)

    return BackwardRecord(
        tasks=names,
        losses=raw.detach(),
        weights=None if weights is None else weights.detach(),
        head_weights=head_weights.detach(),
        level=level if method.needs != "losses" else "losses",
        penalties={p.name: p.value.detach() for p in penalties},
        gramian=gram,
        saliency=sal.detach() if (keep_saliency and sal is not None) else None,
        info=dict(method.info),
        multi_input=multi_input,
    )


def _apply_split(
    head_part: torch.Tensor,
    penalty_part: torch.Tensor | None,
    reps: list[torch.Tensor],
    shared_params: Iterable[torch.Tensor] | None,
    method: Method,
    level: str,
    weights: torch.Tensor | None,
    direction: torch.Tensor | None,
    sal: torch.Tensor | None,
    terms: list[torch.Tensor],
    shared: list[torch.Tensor] | None,
    vectorize: bool | None,
) -> list[torch.Tensor] | None:
    """Heads (and the method's own parameters) get the gradient of ``head_part`` plus the
    penalties; the encoder's incoming gradient is built from the method's result. Returns the
    gradient for each representation tensor, or ``None`` when the encoder gets nothing more."""
    encoder_from_parameters = direction is not None and level == "parameters"
    saliencies: Sequence[torch.Tensor] | None = sal
    if not encoder_from_parameters and sal is None:
        if len(reps) > 1:  # per-task Z_t may differ in batch size: keep them apart
            saliencies = torch.autograd.grad(sum(terms), reps, retain_graph=True, allow_unused=True)
            saliencies = [s if s is not None else torch.zeros_like(z) for s, z in zip(saliencies, reps)]
        else:
            saliencies = G.saliency(terms, reps[0], vectorize=vectorize)
    roots = [head_part] if penalty_part is None else [head_part, penalty_part]
    leaves = G.leaves_between(roots, stop=reps)
    if shared is not None:
        shared_ids = {id(p) for p in shared}
        leaked = [tuple(p.shape) for p in leaves if id(p) in shared_ids]
        if leaked:
            raise ValueError(
                f"shared parameters of shapes {leaked} reach the losses without passing through the "
                "representation; pass the tensor the heads actually consume as representation="
            )
    _accumulate(leaves, torch.autograd.grad(head_part, leaves, retain_graph=penalty_part is not None, allow_unused=True))
    penalty_rep_grads: list[torch.Tensor | None] = [None] * len(reps)
    if penalty_part is not None:
        grads = torch.autograd.grad(penalty_part, [*reps, *leaves], allow_unused=True)
        penalty_rep_grads = list(grads[: len(reps)])
        _accumulate(leaves, grads[len(reps):])

    if encoder_from_parameters:
        _check_covers_encoder(reps, shared)
        _accumulate(shared, G.unflatten_like(direction, shared))
        method_rep_grads: list[torch.Tensor | None] = [None] * len(reps)
    else:
        # Combined in the solver's dtype, handed to autograd in each Z's own dtype.
        if direction is not None:
            method_rep_grads = [direction.view_as(reps[0]).to(reps[0].dtype)]
        elif len(reps) == 1:
            stacked = saliencies.detach().to(weights.dtype)
            method_rep_grads = [torch.einsum("t,t...->...", weights, stacked).to(reps[0].dtype)]
        else:
            method_rep_grads = [(w * s.detach().to(w.dtype)).to(z.dtype) for w, s, z in zip(weights, saliencies, reps)]

    if all(g_m is None and g_p is None for g_m, g_p in zip(method_rep_grads, penalty_rep_grads)):
        return None
    out: list[torch.Tensor] = []
    for z, g_method, g_pen in zip(reps, method_rep_grads, penalty_rep_grads):
        parts = [g for g in (g_method, g_pen) if g is not None]
        out.append(torch.zeros_like(z) if not parts else parts[0] if len(parts) == 1 else parts[0] + parts[1])
    return out


def _accumulate(tensors: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    for tensor, grad in zip(tensors, grads, strict=True):
        if grad is None:
            continue
        tensor.grad = grad.detach() if tensor.grad is None else tensor.grad + grad.detach()


def _loss_terms(losses: Mapping[str, torch.Tensor]) -> tuple[tuple[str, ...], list[torch.Tensor]]:
    if not isinstance(losses, Mapping) or not losses:
        raise TypeError("losses must be a non-empty mapping task name -> scalar loss tensor")
    values = []
    for name, loss in losses.items():
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"loss of task {name!r} is a {type(loss).__name__}, not a tensor")
        if loss.numel() != 1:
            raise ValueError(f"loss of task {name!r} must be a scalar, got shape {tuple(loss.shape)}")
        if not loss.requires_grad:
            raise ValueError(f"loss of task {name!r} does not require grad (computed under no_grad or detached?)")
        values.append(loss.reshape(()))
    return tuple(losses), values


def _transform(raw: torch.Tensor, transform: str, eps: float) -> torch.Tensor:
    if transform == "none":
        return raw
    if transform == "log":
        return torch.log(raw + eps)
    raise ValueError(f"unknown loss_transform {transform!r}; choose 'none' or 'log'")


def _check_finite(names: tuple[str, ...], raw: torch.Tensor, task_losses: torch.Tensor, transform: str) -> None:
    raw, finite = raw.detach(), torch.isfinite(task_losses.detach())
    if bool(finite.all()):
        return
    bad = {names[i]: raw[i].item() for i in range(len(names)) if not bool(finite[i])}
    hint = " (the log transform needs losses > 0)" if transform == "log" else ""
    raise FloatingPointError(f"non-finite loss for task(s) {bad}{hint}")


def _solver_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float32 for half-precision tensors (autocast), else the tensor's own dtype."""
    return torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype


def _translate_compile_errors(compute):
    """Run ``compute``; torch.compile's donated-buffer error gets a message that says what to do."""
    try:
        return compute()
    except RuntimeError as exc:
        if "donated buffer" not in str(exc).lower():
            raise
        raise RuntimeError(
            "a torch.compile'd module freed its saved tensors (donated buffers) before the task "
            "gradients were taken; set torch._functorch.config.donated_buffer = False before "
            "compiling (repmtl takes several backwards through the compiled graph)"
        ) from exc


def _check_reaches_representation(
    names: tuple[str, ...], terms: Sequence[torch.Tensor], reps: Sequence[torch.Tensor]
) -> None:
    """Refuse a loss that autograd cannot trace back to the representation (its saliency would
    be silently zero). The usual cause is ``torch.compile`` of the whole model: ``Z`` and the
    predictions then come out of one fused node, and no gradient edge leads from a prediction
    to ``Z``. Edges are ``(node, output index)`` pairs, so a sibling output does not count."""
    targets = {(z.grad_fn, z.output_nr) for z in reps if z.grad_fn is not None}
    leaf_ids = {id(z) for z in reps if z.grad_fn is None}
    for name, term in zip(names, terms):
        if not _reaches(term, targets, leaf_ids):
            raise ValueError(
                f"the loss of task {name!r} does not depend on the representation passed to backward(); "
                "pass the tensor the heads consumed. If the whole model is torch.compile'd, compile the "
                "encoder and the heads separately (a compiled model hides Z from autograd)"
            )


def _reaches(term: torch.Tensor, targets: set, leaf_ids: set[int]) -> bool:
    edges, seen = [(term.grad_fn, term.output_nr)], set()
    while edges:
        node, index = edges.pop()
        if node is None:
            continue
        if (node, index) in targets:
            return True
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) in leaf_ids:
            return True
        if node not in seen:
            seen.add(node)
            edges.extend(node.next_functions)
    return False


def _check_stackable(
    names: tuple[str, ...], reps: Sequence[torch.Tensor], regularizers: Sequence[Regularizer], keep: bool
) -> None:
    shapes = {n: tuple(z.shape) for n, z in zip(names, reps)}
    if len(set(shapes.values())) > 1:
        users = [type(r).__name__ for r in regularizers if r.needs_saliency] + (["keep_saliency"] if keep else [])
        raise ValueError(
            f"{', '.join(users)} pair(s) the tasks' samples by position and need(s) one batch shape for "
            f"every task; the per-task representations have shapes {shapes}"
        )


def _resolve_method(method: Method | str, names: tuple[str, ...]) -> Method:
    if isinstance(method, str):
        method = M.create(method)
        if _is_stateful(method.bind(names)):
            raise TypeError(
                f"method {method.name!r} keeps state from step to step; passed by name it would be "
                f"re-created (and its state lost) on every call. Create it once, "
                f"m = repmtl.methods.create({method.name!r}, tasks=[...]), and pass method=m"
            )
    if not isinstance(method, Method):
        raise TypeError(f"method must be a repmtl Method or a registered name, got {type(method).__name__}")
    if method.learnable and method.task_names is None:
        raise RuntimeError(
            f"method {method.name!r} learns parameters: create it with tasks=[...] (or call bind) "
            "and give method.parameters() to your optimizer before the first backward"
        )
    return method.bind(names)


def _is_stateful(method: Method) -> bool:
    """Whether a freshly bound method holds anything that later steps would read."""
    state = method.state_dict()
    extra = state.pop("_extra_state", {})
    return bool(state) or method.learnable or any(k != "task_names" for k in extra)


def _representations(
    representation: Representation | None, names: tuple[str, ...]
) -> tuple[list[torch.Tensor] | None, torch.Tensor | list[torch.Tensor] | None]:
    if representation is None:
        return None, None
    if isinstance(representation, Mapping):
        if set(representation) != set(names):
            raise ValueError(
                f"tasks of the losses {sorted(names)} and of the representations {sorted(representation)} differ"
            )
        reps = [representation[n] for n in names]
        arg: torch.Tensor | list[torch.Tensor] = reps
    elif isinstance(representation, torch.Tensor):
        reps = [representation]
        arg = representation
    else:
        raise TypeError("representation must be a tensor or a mapping task -> tensor")
    for z in reps:
        if not z.requires_grad:
            raise ValueError("the representation does not require grad: pass the encoder output the heads consumed, not a detached copy")
    return reps, arg


def _shared_parameters(shared_params: Iterable[torch.Tensor] | None, reps: list[torch.Tensor]) -> list[torch.Tensor]:
    if shared_params is None:
        found = G.leaves_between(reps, stop=[])
        if not found:
            raise ValueError("no trainable parameter lies behind the representation")
        return found
    params = [p for p in shared_params if p.requires_grad]
    if not params:
        raise ValueError("shared_params holds no parameter that requires grad")
    return params


def _check_covers_encoder(reps: list[torch.Tensor], shared: list[torch.Tensor]) -> None:
    """A direction method writes the update into ``shared`` only; refuse to leave other
    trainable encoder parameters silently untrained."""
    shared_ids = {id(p) for p in shared}
    missing = [tuple(p.shape) for p in G.leaves_between(reps, stop=[]) if id(p) not in shared_ids]
    if missing:
        raise ValueError(
            f"trainable parameters of shapes {missing} lie behind the representation but are not in "
            "shared_params; they would receive no update. Include them or freeze them"
        )


def _last_layer(reps: list[torch.Tensor], shared: list[torch.Tensor]) -> list[torch.Tensor]:
    """The shared parameters of the layer closest to ``Z``: breadth-first from ``Z``, the first
    autograd node holding a ≥2-D shared parameter, with its other parameters and the 1-D ones
    (norm affines, biases) met on the way."""
    shared_ids = {id(p) for p in shared}
    frontier = [z.grad_fn for z in reps if z.grad_fn is not None]
    seen: set = set()
    picked: list[torch.Tensor] = []
    while frontier:
        nxt = []
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
            nxt.extend(f for f, _ in node.next_functions if f is not None and getattr(f, "variable", None) is None)
        frontier = nxt
    if not picked:
        raise ValueError("found no shared parameter behind the representation for the last-layer scope")
    return picked
