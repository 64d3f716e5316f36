"""What :func:`repmtl.backward` checks about its inputs before any gradient is taken: the
losses, the representation(s), the method and the shared parameters. Each refusal names what
is wrong and what to do."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from repmtl import grads as G
from repmtl import methods as M
from repmtl.methods.base import Level, LossTransform, LossWeighting, Method
from repmtl.regularizers.base import Regularizer

Representation = torch.Tensor | Mapping[str, torch.Tensor]
NEEDS_REPRESENTATION = "this method, level or regularizer needs the shared representation; pass representation=Z"
_T = TypeVar("_T")


@dataclass
class Terms:
    """Task names, raw losses (stacked, detached) and the transformed per-task terms."""

    names: tuple[str, ...]
    raw: torch.Tensor
    terms: list[torch.Tensor]

    @property
    def for_method(self) -> torch.Tensor:
        """The terms for the method: detached, in at least float32 (autocast may give bf16)."""
        stacked = torch.stack(self.terms).detach()
        return stacked.to(solver_dtype(stacked))


@dataclass
class Inputs:
    """The representation(s) the heads consumed, and where the shared parameters are."""

    reps: list[torch.Tensor] | None
    multi_input: bool
    shared_params: Iterable[torch.Tensor] | None


def task_names(losses: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    if not isinstance(losses, Mapping) or not losses:
        raise TypeError("losses must be a non-empty mapping task name -> scalar loss tensor")
    return tuple(losses)


def loss_terms(
    losses: Mapping[str, torch.Tensor], method: Method, transform: LossTransform | None, eps: float, check_finite: bool
) -> Terms:
    """The checked losses and their transformed terms (``log(L_t + eps)`` or ``L_t``), kept as
    separate tensors: a backward from one of them meets only its own head."""
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
    return Terms(names, raw, terms)


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


class NonFiniteLoss(FloatingPointError):
    """A task loss (or its transformed term) is not finite; ``tasks`` names them."""

    def __init__(self, message: str, tasks: tuple[str, ...]) -> None:
        super().__init__(message)
        self.tasks = tasks


def _check_finite(names: tuple[str, ...], raw: torch.Tensor, task_losses: torch.Tensor, transform: str) -> None:
    finite = torch.isfinite(task_losses)
    if bool(finite.all()):  # the one host sync of a step
        return
    bad = {names[i]: raw[i].item() for i in range(len(names)) if not bool(finite[i])}
    hint = " (the log transform needs losses > 0)" if transform == "log" else ""
    raise NonFiniteLoss(f"non-finite loss for task(s) {bad}{hint}", tuple(bad))


def solver_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float32 for half-precision tensors (autocast), else the tensor's own dtype."""
    return torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype


def translate_compile_errors(compute: Callable[[], _T]) -> _T:
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


def inputs(
    representation: Representation | None,
    shared_params: Iterable[torch.Tensor] | None,
    names: tuple[str, ...],
    terms: Sequence[torch.Tensor],
) -> Inputs:
    """The representation(s) as a list in task order, each checked to lie behind every loss."""
    if representation is None:
        return Inputs(None, False, shared_params)
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
    return Inputs(reps, isinstance(representation, Mapping), shared_params)


def check_needs_representation(method: Method, level: Level, regularizers: Sequence[Regularizer], given: Inputs) -> None:
    at_representation = not isinstance(method, LossWeighting) and level == "representation"
    if at_representation and given.multi_input:
        raise ValueError(
            f"method {method.name!r} at level 'representation' is undefined for per-task representations "
            "(multi-input data, or an architecture such as MTAN or MMoE that gives each task its own Z_t): "
            "the task gradients ∂L_t/∂Z_t live on different tensors and never share a space; "
            "use level='parameters' (or 'last_layer')"
        )
    needs = any(r.needs_saliency for r in regularizers) or not isinstance(method, LossWeighting)
    if given.reps is None and needs:
        raise ValueError(NEEDS_REPRESENTATION)


def check_stackable(
    names: tuple[str, ...], reps: Sequence[torch.Tensor], regularizers: Sequence[Regularizer], keep: bool
) -> None:
    shapes = {n: tuple(z.shape) for n, z in zip(names, reps)}
    if len(set(shapes.values())) > 1:
        users = [type(r).__name__ for r in regularizers if r.needs_saliency] + (["keep_saliency"] if keep else [])
        raise ValueError(
            f"{', '.join(users)} pair(s) the tasks' samples by position and need(s) one batch shape for "
            f"every task; the per-task representations have shapes {shapes}"
        )


def resolve_method(method: Method | str, names: tuple[str, ...]) -> Method:
    """The method bound to the tasks; a stateful method passed by name is refused (it would be
    re-created, its state lost, on every call), as is an unbound one with learnable parameters."""
    if isinstance(method, str):
        method = M.create(method)
        if method.bind(names).stateful:
            raise TypeError(
                f"method {method.name!r} keeps state from step to step; passed by name it would be "
                f"re-created (and its state lost) on every call. Create it once, "
                f"m = repmtl.methods.create({method.name!r}, tasks=[...]), and pass method=m"
            )
    if not isinstance(method, Method):
        raise TypeError(f"method must be a repmtl Method or a registered name, got {type(method).__name__}")
    if method.task_names is None and copy.deepcopy(method).bind(names).learnable:  # a copy: refusing binds nothing
        raise RuntimeError(
            f"method {method.name!r} learns parameters: create it with tasks=[...] (or call bind) "
            "and give method.parameters() to your optimizer before the first backward"
        )
    return method.bind(names)


def shared_parameters(shared_params: Iterable[torch.Tensor] | None, reps: list[torch.Tensor]) -> list[torch.Tensor]:
    """``shared_params``, or by default every trainable leaf behind *every* representation (with
    one ``Z``: every leaf behind it)."""
    if shared_params is None:
        found = G.leaves_between(reps[:1], stop=[])
        for z in reps[1:]:
            behind = {id(p) for p in G.leaves_between([z], stop=[])}
            found = [p for p in found if id(p) in behind]
        if not found:
            raise ValueError("no trainable parameter lies behind the representation")
        return found
    params = [p for p in shared_params if p.requires_grad]
    if not params:
        raise ValueError("shared_params holds no parameter that requires grad")
    return params


def task_specific(reps: list[torch.Tensor], shared: list[torch.Tensor]) -> list[list[torch.Tensor]] | None:
    """For per-task representations ``Z_t`` of one input (``docs/architectures.md``): each task's
    trainable parameters that lie behind its own ``Z_t`` only and are not shared (MTAN's attention
    modules, a mixture of experts' gates, CGC's task experts). They are task parameters like the
    heads: they get their task's gradient times the heads' weight, never the other tasks'.
    ``None`` when there is no such parameter (hard sharing, multi-input data with one encoder)."""
    if len(reps) < 2:
        return None
    shared_ids = {id(p) for p in shared}
    behind = [[p for p in G.leaves_between([z], stop=[]) if id(p) not in shared_ids] for z in reps]
    uses: dict[int, int] = {}
    for params in behind:
        for p in params:
            uses[id(p)] = uses.get(id(p), 0) + 1
    own = [[p for p in params if uses[id(p)] == 1] for params in behind]
    return own if any(own) else None


def covers_encoder(reps: list[torch.Tensor], shared: list[torch.Tensor], required: bool) -> bool:
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


def refuse_leaks(above: Sequence[torch.Tensor], shared: Sequence[torch.Tensor] | None) -> None:
    """Refuse shared parameters that reach the losses around ``Z`` (they would be updated twice)."""
    if shared is None:
        return
    shared_ids = {id(p) for p in shared}
    leaked = [tuple(p.shape) for p in above if id(p) in shared_ids]
    if leaked:
        raise ValueError(
            f"shared parameters of shapes {leaked} reach the losses without passing through the "
            "representation; pass the tensor the heads actually consume as representation="
        )
