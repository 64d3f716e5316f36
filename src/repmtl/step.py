"""``repmtl.backward``: one multi-task optimisation step's gradients, in four phases.

1. **Loss terms** (:func:`_loss_terms`): the task losses, checked, transformed (``log`` for the
   methods whose paper says so), kept as separate tensors so that a backward from one of them
   meets only its own head.
2. **Task gradients** (:func:`_task_gradients`) at the method's level: the saliencies
   ``S_t = ∂L_t/∂Z`` when a regularizer or the representation level needs them, and the task
   Jacobian over the shared parameters (all, or the last shared layer) for a Gramian weighting or
   an aggregator.
3. **The method** (:func:`_run_method`): weights from the losses or the Gramian, or a direction
   from the Jacobian.
4. **The update** (:func:`_apply_update`): heads get their task gradients times the heads'
   weights; the shared parameters get the method's update, from the Jacobian in hand (``Jᵀα``
   or the direction) at parameter level, or through one encoder backward from ``Z`` otherwise;
   regularizers add their penalties.

The formulas are in ``docs/formulas.md``, the data flow in ``docs/architecture.md`` ("One step").
The user's ``optimizer.step()`` stays theirs. No host sync beyond the finiteness check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from repmtl import grads as G
from repmtl import methods as M
from repmtl.methods.base import (
    Aggregator,
    GramianWeighting,
    JacobianContext,
    Level,
    LossTransform,
    LossWeighting,
    Method,
    TaskWeights,
)
from repmtl.regularizers.base import Penalty, Regularizer

Representation = torch.Tensor | Mapping[str, torch.Tensor]
_NEEDS_Z = "this method, level or regularizer needs the shared representation; pass representation=Z"


@dataclass
class BackwardRecord:
    """What one call did. Tensors are detached and stay on their device (no host sync).

    ``losses``: raw task losses. ``weights``: the ``α`` of the shared update (``None`` for an
    aggregator). ``head_weights``: the weights the heads received. ``penalties``: regularizer
    values by name (before their λ). ``gramian``: ``K`` when the method needed it (reused by
    diagnostics). ``saliency``: ``S`` if ``keep_saliency``. ``multi_input``: each task had its
    own ``Z_t``.
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


@dataclass
class _Terms:
    """Phase 1: task names, raw losses (stacked, detached) and the transformed terms."""

    names: tuple[str, ...]
    raw: torch.Tensor
    terms: list[torch.Tensor]

    @property
    def detached(self) -> torch.Tensor:
        """The terms for the method: detached, in at least float32 (autocast may give bf16)."""
        stacked = torch.stack(self.terms).detach()
        return stacked.to(_solver_dtype(stacked))


@dataclass
class _Inputs:
    """The representation(s) the heads consumed, and where the shared parameters are."""

    reps: list[torch.Tensor] | None
    multi_input: bool
    shared_params: Iterable[torch.Tensor] | None


@dataclass
class _TaskGradients:
    """Phase 2: what the method consumes, and the saliencies when they were needed."""

    saliency: torch.Tensor | None = None
    jacobian: G.TaskJacobian | torch.Tensor | None = None
    #: the shared parameters (parameter and last-layer levels)
    shared: list[torch.Tensor] | None = None
    #: the shared parameters again when the Jacobian covers every one of them: the update is in hand
    in_hand: list[torch.Tensor] | None = None
    heads: list[list[torch.Tensor]] | None = None
    segments: list[int] | None = None
    penalties: list[Penalty] = field(default_factory=list)


@dataclass
class _Result:
    """Phase 3: the method's weights, or its direction."""

    weights: TaskWeights | None = None
    direction: torch.Tensor | None = None
    gramian: torch.Tensor | None = None


def backward(
    losses: Mapping[str, torch.Tensor],
    *,
    representation: Representation | None,
    shared_params: Iterable[torch.Tensor] | None = None,
    method: Method | str = "ew",
    level: Level | None = None,
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
        level: where the task gradients are taken: ``"parameters"`` (every shared parameter),
            ``"last_layer"`` (the shared layer next to ``Z``) or ``"representation"`` (``Z``
            itself, the ``-UB`` / fast-surrogate form). ``None``: the method's default.
        regularizers: penalties added to the objective (e.g. Rep-MTL's TSR and CSA).
        loss_transform: ``"log"`` uses ``log(L_t + eps)`` as the task terms (DB-MTL, IMTL,
            Nash-MTL, Rep-MTL); saliencies are then taken of the transformed terms.
            ``None``: the method's own transform (``"none"`` for most).
        check_finite: raise, naming the task, on a non-finite loss (one host sync per call).
        keep_saliency: return ``S`` in the record (for diagnostics).
        vectorize: task gradients from one ``vmap`` backward (``True``) or a python loop
            (``False``); ``None`` picks per device and model (``repmtl.grads``).
    """
    names = _task_names(losses)
    method = _resolve_method(method, names)
    level = method.resolve_level(level)
    terms = _loss_terms(losses, method, loss_transform, eps, check_finite)
    inputs = _inputs(representation, shared_params, names, terms.terms)
    _check_needs_representation(method, level, regularizers, inputs)
    task_grads = _task_gradients(terms, inputs, method, level, regularizers, keep_saliency, vectorize)
    result = _run_method(method, level, terms, inputs, task_grads)
    head_weights = _apply_update(method, terms, inputs, task_grads, result, vectorize)
    return BackwardRecord(
        tasks=names,
        losses=terms.raw,
        weights=None if result.weights is None else result.weights.shared.detach(),
        head_weights=head_weights.detach(),
        level=level if not isinstance(method, LossWeighting) else "losses",
        penalties={p.name: p.value.detach() for p in task_grads.penalties},
        gramian=result.gramian,
        saliency=task_grads.saliency.detach() if (keep_saliency and task_grads.saliency is not None) else None,
        info=dict(method.info),
        multi_input=inputs.multi_input,
    )


# ---- phase 1: loss terms ------------------------------------------------------------------


def _loss_terms(
    losses: Mapping[str, torch.Tensor], method: Method, transform: LossTransform | None, eps: float, check_finite: bool
) -> _Terms:
    rule = method.loss_transform
    if transform is None:
        transform = rule.transform
    elif rule.required and transform != rule.transform:
        raise ValueError(
            f"method {method.name!r} defines its weights on {rule.transform!r}-transformed losses; "
            f"loss_transform={transform!r} would silently change them"
        )
    raw_terms = [_scalar_loss(name, loss) for name, loss in losses.items()]
    terms = [_transform(term, transform, eps) for term in raw_terms]
    names = tuple(losses)
    raw = torch.stack(raw_terms).detach()
    if check_finite:
        _check_finite(names, raw, torch.stack(terms).detach(), transform)
    return _Terms(names, raw, terms)


# ---- phase 2: task gradients at the method's level ----------------------------------------


def _task_gradients(
    terms: _Terms,
    inputs: _Inputs,
    method: Method,
    level: Level,
    regularizers: Sequence[Regularizer],
    keep_saliency: bool,
    vectorize: bool | None,
) -> _TaskGradients:
    out = _TaskGradients()
    needs_graph = any(r.needs_saliency for r in regularizers)
    at_representation = not isinstance(method, LossWeighting) and level == "representation"
    if needs_graph or at_representation or keep_saliency:
        if inputs.multi_input:
            _check_stackable(terms.names, inputs.reps, regularizers, keep_saliency)
        out.saliency = _saliencies(terms.terms, inputs, create_graph=needs_graph, vectorize=vectorize)
        out.penalties = [p for r in regularizers for p in r(out.saliency, torch.stack(terms.terms), multi_input=inputs.multi_input)]
    if isinstance(method, LossWeighting):
        return out
    if at_representation:
        jac = G.representation_jacobian(out.saliency.detach())
        out.jacobian = jac.to(_solver_dtype(jac))
        return out
    shared = out.shared = _shared_parameters(inputs.shared_params, inputs.reps)
    covered = _covers_encoder(inputs.reps, shared, required=isinstance(method, Aggregator))
    params = shared if level == "parameters" else G.last_layer_parameters(inputs.reps, shared)
    if level == "parameters" and covered:
        # The Jacobian in hand gives the whole shared update (Jᵀα or the direction), and the
        # same passes give each head its task gradient when the heads are disjoint.
        out.in_hand = shared
        out.heads = G.disjoint_heads(terms.terms, inputs.reps)
    # without penalties, shared heads or the method's own parameters, nothing is differentiated
    # through the graph after the Jacobian: its last pass may free the graph as it goes
    keep_graph = out.heads is None or bool(regularizers) or method.learnable
    out.jacobian = _translate_compile_errors(
        lambda: G.task_jacobian(terms.terms, params, vectorize=vectorize, task_inputs=out.heads, keep_graph=keep_graph)
    )
    out.segments = [p.numel() for p in params]
    return out


# ---- phase 3: the method ------------------------------------------------------------------


def _run_method(method: Method, level: Level, terms: _Terms, inputs: _Inputs, grads: _TaskGradients) -> _Result:
    losses = terms.detached
    if isinstance(method, LossWeighting):
        result = _Result(weights=TaskWeights.of(method.weights(losses)))
    elif isinstance(method, GramianWeighting):
        jac = grads.jacobian
        gram = jac.gramian() if isinstance(jac, G.TaskJacobian) else G.gramian(jac)
        result = _Result(weights=TaskWeights.of(method.weights(gram, losses)), gramian=gram)
    else:
        jac = grads.jacobian.matrix() if isinstance(grads.jacobian, G.TaskJacobian) else grads.jacobian
        at_representation = level == "representation"
        context = JacobianContext(
            losses=losses,
            level=level,
            segments=None if at_representation else grads.segments,
            representation=inputs.reps[0].detach() if at_representation else None,
        )
        direction = method.aggregate(jac, context)
        if direction.shape != jac.shape[1:]:
            raise RuntimeError(
                f"method {method.name!r} returned a direction of shape {tuple(direction.shape)}, "
                f"expected {tuple(jac.shape[1:])}"
            )
        return _Result(direction=direction)
    for name, value in (("weights", result.weights.shared), ("head weights", result.weights.for_heads)):
        if value.shape != terms.raw.shape:
            raise RuntimeError(
                f"method {method.name!r} returned {name} of shape {tuple(value.shape)}, expected {tuple(terms.raw.shape)}"
            )
    return result


# ---- phase 4: the update ------------------------------------------------------------------


def _apply_update(
    method: Method, terms: _Terms, inputs: _Inputs, grads: _TaskGradients, result: _Result, vectorize: bool | None
) -> torch.Tensor:
    """Write the step's gradients into ``.grad``; returns the weights the heads received."""
    head_weights = result.weights.for_heads if result.weights is not None else torch.ones_like(terms.raw)
    head_part = (head_weights * torch.stack(terms.terms)).sum()
    extra = method.extra_loss()
    if extra is not None:
        head_part = head_part + extra
    penalty_part = _weighted_sum(grads.penalties)

    if grads.in_hand is None and result.direction is None and result.weights.heads is None:
        # The objective's own gradient is the method's update everywhere: one plain backward.
        (head_part if penalty_part is None else head_part + penalty_part).backward()
        return head_weights

    if inputs.reps is None:
        raise ValueError(_NEEDS_Z)  # a loss weighting whose heads' weights differ (RGW)
    above, rest = _parameters_above(head_part, penalty_part, inputs, grads)
    if grads.heads is not None:
        for weight, params, task_grads in zip(head_weights.detach(), grads.heads, grads.jacobian.task_grads, strict=True):
            # autograd's fresh gradients, scaled in place (no second copy)
            _accumulate(params, [None if g is None else g.mul_(weight) for g in task_grads])
    if rest:
        _accumulate(rest, torch.autograd.grad(head_part, rest, retain_graph=True, allow_unused=True))
    penalty_at_z = _penalties_above(penalty_part, inputs.reps, above)

    if grads.in_hand is not None:
        if result.direction is None:
            grads.jacobian.accumulate(result.weights.shared.detach())  # Jᵀα
        else:
            G.accumulate_direction(result.direction, grads.in_hand)
        method_at_z = None
    else:
        method_at_z = _update_at_representation(terms, inputs, grads, result, vectorize)
    incoming = _sum_per_representation(inputs.reps, method_at_z, penalty_at_z)
    if incoming is not None:
        torch.autograd.backward(inputs.reps, incoming)
    return head_weights


def _parameters_above(
    head_part: torch.Tensor, penalty_part: torch.Tensor | None, inputs: _Inputs, grads: _TaskGradients
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every parameter above ``Z`` (heads, the method's own), and those of them whose head
    gradient the Jacobian's passes did not already give. Refuses shared parameters that reach
    the losses around ``Z``."""
    roots = [head_part] if penalty_part is None else [head_part, penalty_part]
    above = G.leaves_between(roots, stop=inputs.reps)
    if grads.shared is not None:
        shared_ids = {id(p) for p in grads.shared}
        leaked = [tuple(p.shape) for p in above if id(p) in shared_ids]
        if leaked:
            raise ValueError(
                f"shared parameters of shapes {leaked} reach the losses without passing through the "
                "representation; pass the tensor the heads actually consume as representation="
            )
    if grads.heads is None:
        return above, above
    done = {id(p) for head in grads.heads for p in head}
    return above, [p for p in above if id(p) not in done]


def _penalties_above(
    penalty_part: torch.Tensor | None, reps: list[torch.Tensor], above: list[torch.Tensor]
) -> list[torch.Tensor | None] | None:
    """Add the penalties' gradients to the parameters above ``Z``; return their ``∂/∂Z``."""
    if penalty_part is None:
        return None
    found = torch.autograd.grad(penalty_part, [*reps, *above], retain_graph=True, allow_unused=True)
    _accumulate(above, found[len(reps):])
    return list(found[: len(reps)])


def _update_at_representation(
    terms: _Terms, inputs: _Inputs, grads: _TaskGradients, result: _Result, vectorize: bool | None
) -> list[torch.Tensor]:
    """The method's incoming gradient at each ``Z``: ``Σ_t α_t S_t``, or the direction."""
    reps = inputs.reps
    if result.direction is not None:
        return [result.direction.view_as(reps[0]).to(reps[0].dtype)]
    weights = result.weights.shared.detach()
    saliency = grads.saliency
    if saliency is None:
        saliency = _saliencies(terms.terms, inputs, create_graph=False, vectorize=vectorize)
    if not inputs.multi_input:
        stacked = saliency.detach().to(weights.dtype)
        return [torch.einsum("t,t...->...", weights, stacked).to(reps[0].dtype)]
    return [(w * s.detach().to(w.dtype)).to(z.dtype) for w, s, z in zip(weights, saliency, reps, strict=True)]


def _sum_per_representation(
    reps: list[torch.Tensor], *parts: list[torch.Tensor | None] | None
) -> list[torch.Tensor] | None:
    totals: list[torch.Tensor | None] = [None] * len(reps)
    for part in parts:
        for i, grad in enumerate(part or ()):
            if grad is not None:
                totals[i] = grad if totals[i] is None else totals[i] + grad
    if all(total is None for total in totals):
        return None
    return [torch.zeros_like(z) if total is None else total for z, total in zip(reps, totals, strict=True)]


def _weighted_sum(penalties: Sequence[Penalty]) -> torch.Tensor | None:
    total: torch.Tensor | None = None
    for penalty in penalties:
        term = penalty.weight * penalty.value
        total = term if total is None else total + term
    return total


def _accumulate(tensors: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    for tensor, grad in zip(tensors, grads, strict=True):
        if grad is None:
            continue
        tensor.grad = grad.detach() if tensor.grad is None else tensor.grad + grad.detach()


# ---- shared helpers -----------------------------------------------------------------------


def _saliencies(
    terms: list[torch.Tensor], inputs: _Inputs, *, create_graph: bool, vectorize: bool | None
) -> torch.Tensor | list[torch.Tensor]:
    """``S_t = ∂L_t/∂Z`` stacked ``(T, *Z.shape)``; for multi-input data of unequal batch
    shapes, one ``∂L_t/∂Z_t`` per task (one backward of ``Σ L_t``: the tasks' graphs are
    disjoint above the encoder)."""
    reps = inputs.reps
    if not inputs.multi_input:
        return _translate_compile_errors(lambda: G.saliency(terms, reps[0], create_graph=create_graph, vectorize=vectorize))
    if len({tuple(z.shape) for z in reps}) == 1:
        return G.saliency(terms, reps, create_graph=create_graph, vectorize=vectorize)
    found = torch.autograd.grad(sum(terms), reps, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(z) if s is None else s for s, z in zip(found, reps, strict=True)]


def _task_names(losses: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    if not isinstance(losses, Mapping) or not losses:
        raise TypeError("losses must be a non-empty mapping task name -> scalar loss tensor")
    return tuple(losses)


def _scalar_loss(name: str, loss: object) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss of task {name!r} is a {type(loss).__name__}, not a tensor")
    if loss.numel() != 1:
        raise ValueError(f"loss of task {name!r} must be a scalar, got shape {tuple(loss.shape)}")
    if not loss.requires_grad:
        raise ValueError(f"loss of task {name!r} does not require grad (computed under no_grad or detached?)")
    return loss.reshape(())


def _transform(raw: torch.Tensor, transform: str, eps: float) -> torch.Tensor:
    if transform == "none":
        return raw
    if transform == "log":
        return torch.log(raw + eps)
    raise ValueError(f"unknown loss_transform {transform!r}; choose 'none' or 'log'")


def _check_finite(names: tuple[str, ...], raw: torch.Tensor, task_losses: torch.Tensor, transform: str) -> None:
    finite = torch.isfinite(task_losses)
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


def _inputs(
    representation: Representation | None,
    shared_params: Iterable[torch.Tensor] | None,
    names: tuple[str, ...],
    terms: Sequence[torch.Tensor],
) -> _Inputs:
    if representation is None:
        return _Inputs(None, False, shared_params)
    if isinstance(representation, Mapping):
        if set(representation) != set(names):
            raise ValueError(
                f"tasks of the losses {sorted(names)} and of the representations {sorted(representation)} differ"
            )
        reps = [representation[n] for n in names]
    elif isinstance(representation, torch.Tensor):
        reps = [representation]
    else:
        raise TypeError("representation must be a tensor or a mapping task -> tensor")
    for z in reps:
        if not z.requires_grad:
            raise ValueError("the representation does not require grad: pass the encoder output the heads consumed, not a detached copy")
    for name, term in zip(names, terms, strict=True):
        # a loss autograd cannot trace to Z would get a silently zero saliency
        if not G.reaches(term, reps):
            raise ValueError(
                f"the loss of task {name!r} does not depend on the representation passed to backward(); "
                "pass the tensor the heads consumed. If the whole model is torch.compile'd, compile the "
                "encoder and the heads separately (a compiled model hides Z from autograd)"
            )
    return _Inputs(reps, isinstance(representation, Mapping), shared_params)


def _check_needs_representation(
    method: Method, level: Level, regularizers: Sequence[Regularizer], inputs: _Inputs
) -> None:
    at_representation = not isinstance(method, LossWeighting) and level == "representation"
    if at_representation and inputs.multi_input:
        raise ValueError(
            f"method {method.name!r} at level 'representation' is undefined for multi-input data: "
            "each task has its own representation, so task gradients never share a space; "
            "use level='parameters'"
        )
    needs = any(r.needs_saliency for r in regularizers) or not isinstance(method, LossWeighting)
    if inputs.reps is None and needs:
        raise ValueError(_NEEDS_Z)


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
    if method.task_names is None and method.bind(names).learnable:
        raise RuntimeError(
            f"method {method.name!r} learns parameters: create it with tasks=[...] (or call bind) "
            "and give method.parameters() to your optimizer before the first backward"
        )
    return method.bind(names)


def _is_stateful(method: Method) -> bool:
    """Whether a freshly bound method holds anything that later steps would read."""
    return bool(method.state) or method.learnable


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


def _covers_encoder(reps: list[torch.Tensor], shared: list[torch.Tensor], required: bool) -> bool:
    """Whether ``shared`` holds every trainable parameter behind ``Z``. An aggregator writes its
    update into ``shared`` only, so it ``required`` s that (never leave encoder parameters
    silently untrained); a Gramian weighting then updates the others through ``Z``."""
    shared_ids = {id(p) for p in shared}
    missing = [tuple(p.shape) for p in G.leaves_between(reps, stop=[]) if id(p) not in shared_ids]
    if missing and required:
        raise ValueError(
            f"trainable parameters of shapes {missing} lie behind the representation but are not in "
            "shared_params; they would receive no update. Include them or freeze them"
        )
    return not missing
