"""``repmtl.backward``: one multi-task optimisation step's gradients, in four phases.

1. **Loss terms** (:func:`repmtl.step.inputs.loss_terms`): the task losses, checked and
   transformed (``log`` for the methods whose paper says so), kept as separate tensors so that a
   backward from one of them meets only its own head.
2. **Task gradients** (:func:`task_gradients`) at the method's level: the saliencies
   ``S_t = ∂L_t/∂Z`` when a regularizer or the representation level needs them, and the task
   Jacobian over the shared parameters (all of them, or the last shared layer) for a Gramian
   weighting or an aggregator.
3. **The method** (:func:`run_method`): weights from the losses or the Gramian, a direction
   from the Jacobian, or (a segment-Gramian aggregator at parameter level) weights per shared
   parameter from their Gramians.
4. **The update** (:func:`apply_update`): heads get their task gradients times the heads'
   weights; the shared parameters get the method's update, from the Jacobian in hand (``Jᵀα`` or
   the direction) at parameter level, or through one encoder backward from ``Z`` otherwise;
   regularizers add their penalties.

The formulas are in ``docs/formulas.md``, the data flow in ``docs/architecture.md`` ("One step").
The user's ``optimizer.step()`` stays theirs. No host sync beyond the finiteness check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from repmtl import grads as G
from repmtl import linear_gram as LG
from repmtl.methods.base import (
    Aggregator,
    GramianWeighting,
    JacobianContext,
    Level,
    LossTransform,
    LossWeighting,
    Method,
    SegmentGramianAggregator,
    TaskWeights,
)
from repmtl.regularizers.base import Penalty, Regularizer
from repmtl.step import inputs as I
from repmtl.step.record import BackwardRecord
from repmtl.step.reduce import Reducer


@dataclass
class Step:
    """What every phase reads: the method at its level, the loss terms, the inputs and options."""

    method: Method
    level: Level
    terms: I.Terms
    given: I.Inputs
    regularizers: Sequence[Regularizer]
    keep_saliency: bool
    vectorize: bool | None
    measure_penalties: bool = False
    #: the cross-rank reductions of a distributed step (``None``: one process)
    reduce: Reducer | None = None
    #: linear layers' Gramian share from their inputs and output gradients (``repmtl.linear_gram``)
    factor_linear: bool = True

    @property
    def at_representation(self) -> bool:
        return not isinstance(self.method, LossWeighting) and self.level == "representation"


@dataclass
class TaskGradients:
    """Phase 2: what the method consumes, and the saliencies when they were needed."""

    saliency: torch.Tensor | list[torch.Tensor] | None = None
    jacobian: G.TaskJacobian | LG.FactoredJacobian | torch.Tensor | None = None
    #: the shared parameters (parameter and last-layer levels)
    shared: list[torch.Tensor] | None = None
    #: the shared parameters again when the Jacobian covers every one of them: the update is in hand
    in_hand: list[torch.Tensor] | None = None
    #: each task's head parameters, when disjoint: their gradients come from the Jacobian's
    #: (or the saliencies') passes, as ``head_grads[t]``
    heads: list[list[torch.Tensor]] | None = None
    head_grads: list[Sequence[torch.Tensor | None]] | None = None
    #: per-task representations of one input: each task's parameters behind its own ``Z_t`` only
    own: list[list[torch.Tensor]] | None = None
    segments: list[int] | None = None
    penalties: list[Penalty] = field(default_factory=list)


@dataclass
class Result:
    """Phase 3: the method's weights, its direction, or its weights per parameter."""

    weights: TaskWeights | None = None
    direction: torch.Tensor | None = None
    gramian: torch.Tensor | None = None
    #: a segment-Gramian aggregator's ``α`` per shared parameter (``P×T``), at parameter level
    segment_weights: torch.Tensor | None = None


def backward(
    losses: Mapping[str, torch.Tensor],
    *,
    representation: I.Representation | None,
    shared_params: Iterable[torch.Tensor] | None = None,
    method: Method | str = "ew",
    level: Level | None = None,
    regularizers: Sequence[Regularizer] = (),
    loss_transform: LossTransform | None = None,
    eps: float = 1e-8,
    check_finite: bool = True,
    keep_saliency: bool = False,
    vectorize: bool | None = None,
    measure_penalties: bool = False,
    reduce: Reducer | None = None,
    factor_linear: bool = True,
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
        measure_penalties: record each penalty's applied gradient norm relative to the task
            gradient's, at the encoder and at the heads (``record.penalty_scale``; one backward
            through the heads per penalty instead of one for all).
        reduce: under ``torch.distributed``, a :class:`repmtl.step.reduce.Reducer` for this
            rank's batch: the method sees the global batch's losses and Jacobian (or Gramian);
            call ``reduce.gradients(params)`` afterwards (``docs/distributed.md``).
        factor_linear: a Gramian weighting (or a segment-Gramian aggregator: GradVac,
            MetaBalance) at parameter (or last-layer) level takes each linear layer's share
            of ``K`` and of ``Jᵀα`` from the layer's input and output gradients, where that costs
            fewer multiply-adds than its ``T`` weight gradients (exact; ``repmtl.linear_gram``).
            ``False``: every shared parameter's rows of ``J`` are formed.
    """
    names = I.task_names(losses)
    if reduce is not None:
        losses = reduce.global_losses(losses, second_order=any(r.needs_saliency for r in regularizers))
    method = I.resolve_method(method, names)
    level = method.resolve_level(level)
    terms = I.loss_terms(losses, method, loss_transform, eps, check_finite)
    given = I.inputs(representation, shared_params, names, terms.terms)
    I.check_needs_representation(method, level, regularizers, given)
    step = Step(method, level, terms, given, regularizers, keep_saliency, vectorize, measure_penalties, reduce, factor_linear)

    grads = task_gradients(step)
    result = run_method(step, grads)
    head_weights, penalty_scale = apply_update(step, grads, result)
    return BackwardRecord(
        tasks=names,
        losses=terms.raw,
        weights=None if result.weights is None else result.weights.shared.detach(),
        head_weights=head_weights.detach(),
        level=level if not isinstance(method, LossWeighting) else "losses",
        penalties={p.name: p.value.detach() for p in grads.penalties},
        gramian=result.gramian,
        saliency=grads.saliency.detach() if (keep_saliency and grads.saliency is not None) else None,
        info=dict(method.info),
        multi_input=given.multi_input,
        penalty_scale=penalty_scale,
    )


# ---- phase 2: task gradients at the method's level ----------------------------------------


def task_gradients(step: Step) -> TaskGradients:
    out = TaskGradients()
    needs_graph = any(r.needs_saliency for r in step.regularizers)
    if needs_graph or step.at_representation or step.keep_saliency:
        if step.given.multi_input:
            I.check_stackable(step.terms.names, step.given.reps, step.regularizers, step.keep_saliency)
        heads = _heads_from_saliency_passes(step)
        if heads is not None:
            out.heads = heads
            out.saliency, out.head_grads = G.saliency_and_task_grads(step.terms.terms, step.given.reps[0], heads)
        else:
            out.saliency = saliencies(step, create_graph=needs_graph)
        stacked = torch.stack(step.terms.terms)
        out.penalties = [p for r in step.regularizers for p in r(out.saliency, stacked, multi_input=step.given.multi_input)]
    if isinstance(step.method, LossWeighting):
        return out
    if step.at_representation:
        jac = G.representation_jacobian(out.saliency.detach())
        out.jacobian = jac.to(I.solver_dtype(jac))
        return out
    reps = step.given.reps
    shared = out.shared = I.shared_parameters(step.given.shared_params, reps)
    out.own = I.task_specific(reps, shared) if step.given.multi_input else None
    owned = [p for params in out.own or () for p in params]
    covered = I.covers_encoder(reps, shared + owned, required=isinstance(step.method, Aggregator))
    params = shared if step.level == "parameters" else G.last_layer_parameters(reps, shared)
    if step.level == "parameters" and covered:
        # The Jacobian in hand gives the whole shared update (Jᵀα or the direction), and the
        # same passes give each head (and the task's own parameters behind Z_t) its task gradient
        # when the heads are disjoint.
        out.in_hand = shared
        out.heads = G.disjoint_heads(step.terms.terms, reps)
        if out.heads is not None and out.own is not None:
            out.heads = [head + own for head, own in zip(out.heads, out.own, strict=True)]
    # without penalties, shared heads or the method's own parameters, nothing is differentiated
    # through the graph after the Jacobian: its last pass may free the graph as it goes
    keep_graph = out.heads is None or bool(step.regularizers) or step.method.learnable
    out.jacobian = I.translate_compile_errors(lambda: _jacobian(step, params, out.heads, keep_graph))
    out.head_grads = list(out.jacobian.task_grads) if out.heads is not None else None
    out.segments = [p.numel() for p in params]
    return out


def _heads_from_saliency_passes(step: Step) -> list[list[torch.Tensor]] | None:
    """At representation level, each task's head parameters when the saliency passes can give
    their gradients too (disjoint heads, one ``Z``, the loop, no penalties): the update then needs
    no further pass through the heads, only the encoder's backward from ``Z``."""
    if not step.at_representation or step.regularizers or step.given.multi_input:
        return None
    if G.use_vmap(step.vectorize, step.terms.terms[0]):
        return None
    return G.disjoint_heads(step.terms.terms, step.given.reps)


def _jacobian(
    step: Step, params: list[torch.Tensor], heads: list[list[torch.Tensor]] | None, keep_graph: bool
) -> G.TaskJacobian | LG.FactoredJacobian:
    """The parameter- or last-layer Jacobian, with its linear layers factored where the method
    needs only Gramians and ``Jᵀα`` (a Gramian weighting, or a segment-Gramian aggregator); not
    under ``torch.distributed``, where the ranks average ``J`` itself."""
    terms = step.terms.terms
    gramians_only = isinstance(step.method, GramianWeighting | SegmentGramianAggregator)
    if step.factor_linear and gramians_only and step.reduce is None:
        factored = LG.factored_jacobian(terms, params, vectorize=step.vectorize, task_inputs=heads, keep_graph=keep_graph)
        if factored is not None:
            return factored
    return G.task_jacobian(terms, params, vectorize=step.vectorize, task_inputs=heads, keep_graph=keep_graph)


def saliencies(step: Step, *, create_graph: bool) -> torch.Tensor | list[torch.Tensor]:
    """``S_t = ∂L_t/∂Z`` stacked ``(T, *Z.shape)``; for multi-input data of unequal batch
    shapes, one ``∂L_t/∂Z_t`` per task (one backward of ``Σ L_t``: the tasks' graphs are
    disjoint above the encoder)."""
    terms, reps = step.terms.terms, step.given.reps
    if not step.given.multi_input:
        return I.translate_compile_errors(
            lambda: G.saliency(terms, reps[0], create_graph=create_graph, vectorize=step.vectorize)
        )
    if len({tuple(z.shape) for z in reps}) == 1:
        return G.saliency(terms, reps, create_graph=create_graph, vectorize=step.vectorize)
    found = torch.autograd.grad(sum(terms), reps, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(z) if s is None else s for s, z in zip(found, reps, strict=True)]


# ---- phase 3: the method ------------------------------------------------------------------


def run_method(step: Step, grads: TaskGradients) -> Result:
    method, losses, reduce = step.method, step.terms.for_method, step.reduce
    if reduce is not None and isinstance(grads.jacobian, G.TaskJacobian):
        grads.jacobian = reduce.jacobian(grads.jacobian)  # the global batch's J, on every rank
    if isinstance(method, SegmentGramianAggregator) and not isinstance(grads.jacobian, torch.Tensor):
        # parameter level, Jacobian in hand (factored or not): per-parameter Gramians in, one α
        # per parameter out, applied by the Jacobian itself (at representation level: aggregate)
        context = JacobianContext(losses=losses, level=step.level, segments=grads.segments)
        weights = method.segment_weights(grads.jacobian.parameter_gramians(), context)
        expected = (len(grads.jacobian.params), len(step.terms.terms))
        if tuple(weights.shape) != expected:
            raise RuntimeError(f"method {method.name!r} returned segment weights of shape {tuple(weights.shape)}, expected {expected}")
        return Result(segment_weights=weights)
    if isinstance(method, Aggregator):
        jac = grads.jacobian.matrix() if isinstance(grads.jacobian, G.TaskJacobian) else grads.jacobian
        z = step.given.reps[0].detach() if step.at_representation else None
        gathered = reduce is not None and step.at_representation
        if gathered:
            jac, z = reduce.gather_representation(jac, z)
        context = JacobianContext(
            losses=losses,
            level=step.level,
            segments=None if step.at_representation else grads.segments,
            representation=z,
        )
        direction = method.aggregate(jac, context)
        if direction.shape != jac.shape[1:]:
            raise RuntimeError(
                f"method {method.name!r} returned a direction of shape {tuple(direction.shape)}, "
                f"expected {tuple(jac.shape[1:])}"
            )
        return Result(direction=reduce.local_direction(direction) if gathered else direction)
    if isinstance(method, GramianWeighting):
        jac = grads.jacobian
        gram = G.gramian(jac) if isinstance(jac, torch.Tensor) else jac.gramian()
        if reduce is not None and step.at_representation:
            gram = reduce.representation_gramian(gram)
        result = Result(weights=TaskWeights.of(method.weights(gram, losses)), gramian=gram)
    else:
        result = Result(weights=TaskWeights.of(method.weights(losses)))
    expected = tuple(step.terms.raw.shape)
    for name, value in (("weights", result.weights.shared), ("head weights", result.weights.for_heads)):
        if tuple(value.shape) != expected:
            raise RuntimeError(f"method {method.name!r} returned {name} of shape {tuple(value.shape)}, expected {expected}")
    return result


# ---- phase 4: the update ------------------------------------------------------------------


def apply_update(step: Step, grads: TaskGradients, result: Result) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Write the step's gradients into ``.grad``; returns the weights the heads received and,
    when measured, the penalties' gradient scale (``BackwardRecord.penalty_scale``)."""
    head_weights = result.weights.for_heads if result.weights is not None else torch.ones_like(step.terms.raw)
    head_part = (head_weights * torch.stack(step.terms.terms)).sum()
    extra = step.method.extra_loss()
    if extra is not None:
        head_part = head_part + extra
    penalties = grads.penalties
    exact = all(p.flow == "exact" for p in penalties) and not step.measure_penalties

    weights_everywhere = result.weights is not None and result.weights.heads is None
    if grads.in_hand is None and grads.heads is None and weights_everywhere and exact:
        # The objective's own gradient is the method's update everywhere: one plain backward.
        penalty_part = _weighted_sum(penalties)
        (head_part if penalty_part is None else head_part + penalty_part).backward()
        return head_weights, {}

    reps = step.given.reps
    if reps is None:
        raise ValueError(I.NEEDS_REPRESENTATION)  # a loss weighting whose heads' weights differ (RGW)
    above = G.leaves_between([head_part, *(p.value for p in penalties)], stop=reps)
    I.refuse_leaks(above, grads.shared)
    owned = _task_specific(step, grads)
    above += owned  # task parameters behind their own Z_t: updated like the heads, not through Z
    rest, task_heads = above, []
    if grads.heads is not None:
        for weight, params, task_grads in zip(head_weights.detach(), grads.heads, grads.head_grads, strict=True):
            # not in place: autograd may return one tensor for several parameters, or an expanded one
            scaled = [None if g is None else g * weight for g in task_grads]
            _accumulate(params, scaled)
            task_heads += scaled
        done = {id(p) for head in grads.heads for p in head}
        rest = [p for p in above if id(p) not in done]
    if rest:
        found = torch.autograd.grad(head_part, rest, retain_graph=True, allow_unused=True)
        _accumulate(rest, found)
        task_heads += found
    penalty_at_z, applied = _penalties_above(penalties, reps, above, step.measure_penalties)

    method_at_z = None
    if grads.in_hand is None:
        method_at_z = _update_at_representation(step, grads, result)
    elif result.segment_weights is not None:
        grads.jacobian.accumulate(result.segment_weights)  # Σ_t α_{p,t} ∂L_t/∂θ_p
    elif result.direction is None:
        grads.jacobian.accumulate(result.weights.shared.detach())  # Jᵀα
    else:
        G.accumulate_direction(result.direction, grads.in_hand)
    scale = {}
    if step.measure_penalties and applied:
        scale = _relative_scale(applied, _norm(_task_gradient_at_z(step, grads, result)), _norm(task_heads))
    _backward_encoder(reps, _sum_per_representation(reps, method_at_z, penalty_at_z), owned)
    return head_weights, scale


def _backward_encoder(
    reps: list[torch.Tensor], incoming: list[torch.Tensor] | None, owned: list[torch.Tensor]
) -> None:
    """One backward from ``Z`` with the encoder's incoming gradient; task parameters behind
    their own ``Z_t`` (``owned``, already updated like the heads) are not reached again."""
    if incoming is None:
        return
    if not owned:
        torch.autograd.backward(reps, incoming)
        return
    owned_ids = {id(p) for p in owned}
    below = [p for p in G.leaves_between(reps, stop=[]) if id(p) not in owned_ids]
    if below:
        torch.autograd.backward(reps, incoming, inputs=below)


def _task_specific(step: Step, grads: TaskGradients) -> list[torch.Tensor]:
    """The task parameters behind their own ``Z_t`` (found in phase 2, or here for a loss weighting)."""
    if not step.given.multi_input:
        return []
    own = grads.own
    if own is None and grads.shared is None:
        own = I.task_specific(step.given.reps, I.shared_parameters(step.given.shared_params, step.given.reps))
    return [p for params in own or () for p in params]


def _penalties_above(
    penalties: Sequence[Penalty], reps: list[torch.Tensor], above: list[torch.Tensor], measure: bool
) -> tuple[list[torch.Tensor | None] | None, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Add the penalties' gradients to the parameters above ``Z`` where their flow allows, and
    return their summed ``∂/∂Z`` (where it allows) and, when ``measure``, each penalty's applied
    gradient norms ``(at Z, at the heads)``. One backward per flow, or per penalty when measured."""
    if not penalties:
        return None, {}
    groups: dict[str, list[Penalty]] = {}
    for penalty in penalties:
        groups.setdefault(penalty.name if measure else penalty.flow, []).append(penalty)
    at_z: list[torch.Tensor | None] = [None] * len(reps)
    applied = {}
    for key, group in groups.items():
        flow = group[0].flow
        found = torch.autograd.grad(_weighted_sum(group), [*reps, *above], retain_graph=True, allow_unused=True)
        to_z = list(found[: len(reps)]) if flow in ("exact", "representation") else []
        to_heads = list(found[len(reps):]) if flow in ("exact", "heads") else []
        if to_heads:
            _accumulate(above, to_heads)
        at_z = _sum_per_representation(reps, at_z, to_z) or at_z
        if measure:
            applied[key] = (_norm(to_z), _norm(to_heads))
    return at_z, applied


def _norm(tensors: Sequence[torch.Tensor | None] | None) -> torch.Tensor:
    """The Euclidean norm of a list of tensors taken together (0 for none), on their device."""
    present = [t.detach().to(torch.float64) for t in tensors or () if t is not None]
    if not present:
        return torch.zeros((), dtype=torch.float64)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in present]))


def _relative_scale(
    applied: dict[str, tuple[torch.Tensor, torch.Tensor]], task_at_z: torch.Tensor, task_heads: torch.Tensor
) -> dict[str, torch.Tensor]:
    tiny = torch.finfo(torch.float64).tiny
    scale = {}
    for name, (at_z, at_heads) in applied.items():
        scale[f"{name}/encoder"] = at_z.to(task_at_z.device) / task_at_z.clamp_min(tiny)
        scale[f"{name}/heads"] = at_heads.to(task_heads.device) / task_heads.clamp_min(tiny)
    return scale


def _update_at_representation(step: Step, grads: TaskGradients, result: Result) -> list[torch.Tensor]:
    """The method's incoming gradient at each ``Z``: ``Σ_t α_t S_t``, or the direction."""
    reps = step.given.reps
    if result.direction is not None:
        return [result.direction.view_as(reps[0]).to(reps[0].dtype)]
    weights = result.weights.shared.detach()
    saliency = grads.saliency if grads.saliency is not None else saliencies(step, create_graph=False)
    if not step.given.multi_input:
        stacked = saliency.detach().to(weights.dtype)
        return [torch.einsum("t,t...->...", weights, stacked).to(reps[0].dtype)]
    return [(w * s.detach().to(w.dtype)).to(z.dtype) for w, s, z in zip(weights, saliency, reps, strict=True)]


def _task_gradient_at_z(step: Step, grads: TaskGradients, result: Result) -> list[torch.Tensor]:
    """The tasks' gradient at ``Z`` the penalties are compared with: ``Σ_t w_t S_t`` with the
    method's shared weights (1 for an aggregator, whose parameter-level direction has no ``Z``
    counterpart), or the representation-level direction itself."""
    if result.direction is not None and step.at_representation:
        return [result.direction]
    weights = result.weights.shared if result.weights is not None else torch.ones_like(step.terms.raw)
    return _update_at_representation(step, grads, Result(weights=TaskWeights(weights.detach())))


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
