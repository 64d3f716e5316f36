"""The method contract and the registry (``docs/architecture.md``, "Methods").

A method derives from the base class that names what it consumes, and writes one function:

* :class:`LossWeighting`: ``weights(losses) -> α`` from the (detached) task losses.
* :class:`GramianWeighting`: ``weights(gramian, losses) -> α`` from the ``T×T`` Gramian
  ``K = J Jᵀ`` of the task gradients; the shared update is ``Jᵀα``.
* :class:`Aggregator`: ``aggregate(jacobian, context) -> d``, a combined direction from the
  ``T×n`` task Jacobian (``context``: losses, parameter segments, the representation).
* :class:`SegmentGramianAggregator`: an aggregator whose direction in every parameter tensor
  (segment) ``s`` is ``Σ_t α_{s,t} J_s[t]`` with ``α`` from the segments' Gramians alone; it
  writes ``segment_weights(gramians, context) -> α`` (``S×T``) and ``aggregate`` follows.

Weights are a tensor (the heads get the same ``α_t ∇L_t``) or a :class:`TaskWeights` saying
what the heads get where that differs. An aggregator's heads get their plain task gradients.

Where the task gradients are taken is one ordered notion, the *level* (:data:`LEVELS`): at the
shared representation ``Z``, over the last shared layer, or over all shared parameters. A method
lists the levels it is defined at, its default first.

Everything a method remembers between steps lives in :attr:`Method.state` (tensors created on
first use, python numbers, lists), or in ``nn.Parameter`` s when an optimizer learns it; both are
in ``state_dict()``, so a checkpoint resumes a run exactly, also into an unbound method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from repmtl import grads as G
from repmtl.hparams import validated_init
from repmtl.methods.state import MethodState

Level = Literal["representation", "last_layer", "parameters"]
#: from the heads inwards: the representation ``Z``, the last shared layer, every shared parameter
LEVELS: tuple[Level, ...] = ("representation", "last_layer", "parameters")
LossTransform = Literal["none", "log"]
FAMILIES = ("loss scaling", "gradient manipulation", "hybrid", "random gradient")


@dataclass(frozen=True)
class TransformRule:
    """The loss transform a method's paper prescribes, and whether a caller may choose another.

    ``required``: the weights are defined on transformed losses (FAMO, STCH, IGB), so another
    transform is refused rather than silently changing them."""

    transform: LossTransform = "none"
    required: bool = False


def prefers(transform: LossTransform) -> TransformRule:
    """The default transform when the caller gives none (DB-MTL: ``"log"``)."""
    return TransformRule(transform, required=False)


def requires(transform: LossTransform) -> TransformRule:
    """The only transform the method accepts."""
    return TransformRule(transform, required=True)


@dataclass(frozen=True)
class TaskWeights:
    """The weights of one step: ``shared`` scales the task gradients of the shared update,
    ``heads`` those of the heads (``None``: the same as ``shared``)."""

    shared: torch.Tensor
    heads: torch.Tensor | None = None

    @classmethod
    def of(cls, result: torch.Tensor | TaskWeights) -> TaskWeights:
        return result if isinstance(result, TaskWeights) else cls(result)

    @property
    def for_heads(self) -> torch.Tensor:
        return self.shared if self.heads is None else self.heads


def plain_heads(shared: torch.Tensor) -> TaskWeights:
    """``shared`` for the shared update; the heads get their plain task gradients."""
    return TaskWeights(shared, torch.ones_like(shared))


@dataclass(frozen=True)
class JacobianContext:
    """What an aggregator may read besides the Jacobian: the (detached) task losses, the sizes
    of the parameter tensors behind the columns (parameter level), the level, and the detached
    representation ``Z`` (representation level)."""

    losses: torch.Tensor
    level: Level
    segments: Sequence[int] | None = None
    representation: torch.Tensor | None = None


class Method(nn.Module):
    """Base of every multi-task optimisation method; derive from one of the three below.

    ``setup(num_tasks)`` runs once when the method first meets its tasks (``bind``): create
    learnable parameters there and give :attr:`state` its initial entries (or ``None`` for an
    entry whose shape the first step decides, see :meth:`MethodState.zeros_like`).
    """

    name: ClassVar[str] = ""
    #: the levels the method is defined at, its default first (:data:`LEVELS`)
    levels: ClassVar[tuple[Level, ...]] = ("parameters", "last_layer", "representation")
    #: the loss transform of the method's paper (``prefers`` / ``requires``)
    loss_transform: ClassVar[TransformRule] = TransformRule()
    #: the optimizer the shared parameters need when the method is itself an optimizer
    #: (MTAdam: plain SGD on its step); ``None``: the trainer's optimizer
    shared_optimizer: ClassVar[str | None] = None
    #: "loss scaling", "gradient manipulation", "hybrid", "random gradient"
    #: (``docs/formulas.md#methods-families``)
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    #: what the method consumes ("losses", "gramian", "jacobian"); set by the three bases below
    consumes: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # validate the declared hyper-parameters (unknown names included) before the body runs
        cls.__init__ = validated_init(cls.__init__, lambda c: f"method {c.name!r}")

    def __init__(self) -> None:
        super().__init__()
        self.task_names: tuple[str, ...] | None = None
        self.state = MethodState()
        #: what the last call wants logged (solver fallbacks, step sizes, ...); tensors allowed
        self.info: dict[str, object] = {}

    @property
    def num_tasks(self) -> int:
        if self.task_names is None:
            raise RuntimeError(f"method {self.name!r} is not bound to tasks yet; call bind(task_names)")
        return len(self.task_names)

    @property
    def learnable(self) -> bool:
        """Whether an optimizer must update parameters of the method (UW's log-variances)."""
        return any(True for _ in self.parameters())

    @property
    def stateful(self) -> bool:
        """Whether the method carries anything from one step to the next (state or learnable
        parameters): such a method must be created once and kept, not re-created per step."""
        return len(self.state) > 0 or self.learnable

    def bind(self, task_names: Sequence[str]) -> Method:
        """Attach the method to its tasks (idempotent for the same tasks)."""
        names = tuple(task_names)
        if self.task_names is None:
            if not names:
                raise ValueError("a method needs at least one task")
            self.task_names = names
            self.setup(len(names))
        elif names != self.task_names:
            raise ValueError(
                f"method {self.name!r} was bound to tasks {list(self.task_names)}, got {list(names)}"
            )
        return self

    def setup(self, num_tasks: int) -> None:
        """Create per-task parameters and state. Default: nothing."""

    def resolve_level(self, level: str | None) -> Level:
        """``level`` checked against :attr:`levels`; ``None`` gives the default."""
        if level is None:
            return self.levels[0] if self.levels else "parameters"
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; choose one of {list(LEVELS)}")
        if self.consumes != "losses" and level not in self.levels:
            raise ValueError(
                f"method {self.name!r} is undefined at level {level!r}; it supports {list(self.levels)}"
            )
        return level

    def extra_loss(self) -> torch.Tensor | None:
        """A term added to the objective for the method's own learnable parameters."""
        return None

    def end_epoch(self) -> None:
        """Called after each training epoch (by the trainer, or by a custom loop)."""

    def get_extra_state(self) -> dict:
        return {"task_names": self.task_names, "state": self.state.to_dict()}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # An unbound method binds from the checkpoint before its per-task parameters load.
        extra = state_dict.get(prefix + "_extra_state")
        if self.task_names is None and isinstance(extra, dict) and extra.get("task_names"):
            self.bind(extra["task_names"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_extra_state(self, extra: dict) -> None:
        names = extra.get("task_names")
        if names is not None and self.task_names is not None and tuple(names) != self.task_names:
            raise ValueError(
                f"checkpoint of method {self.name!r} is for tasks {list(names)}, not {list(self.task_names)}"
            )
        if names is not None and self.task_names is None:
            self.bind(names)
        self.state.load_dict(extra.get("state", {}))

    def _apply(self, fn, recurse: bool = True):
        # ``.to(device)``, ``.double()`` ... move the state's tensors as they move buffers
        super()._apply(fn, recurse)
        self.state.apply(fn)
        return self

    def extra_repr(self) -> str:
        return f"consumes={self.consumes}, tasks={self.task_names}"


class LossWeighting(Method):
    """A method that maps the task losses to weights (loss scaling: EW, UW, DWA, FAMO, ...)."""

    consumes = "losses"
    levels = ()

    def weights(self, losses: torch.Tensor) -> torch.Tensor | TaskWeights:
        """Task weights ``α`` (``T``) from the detached (transformed) task losses."""
        raise NotImplementedError(f"method {self.name!r} does not define weights()")


class GramianWeighting(Method):
    """A method that maps the Gramian ``K = J Jᵀ`` (and the losses) to weights; the shared
    update is ``Jᵀα`` (MGDA, PCGrad, CAGrad, Nash-MTL, UPGrad, ...)."""

    consumes = "gramian"

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> torch.Tensor | TaskWeights:
        """Task weights ``α`` (``T``) from the ``T×T`` Gramian and the detached losses."""
        raise NotImplementedError(f"method {self.name!r} does not define weights()")


class Aggregator(Method):
    """A method that maps the ``T×n`` task Jacobian to a direction in its column space (GradVac,
    GradDrop, MoCo, DB-MTL, MTAdam, ...); the heads get their plain task gradients."""

    consumes = "jacobian"
    levels = ("parameters", "representation")

    def aggregate(self, jacobian: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        """The combined update direction (``n`` entries)."""
        raise NotImplementedError(f"method {self.name!r} does not define aggregate()")


def segment_sizes(context: JacobianContext, columns: int) -> list[int]:
    """The column counts of the parameter tensors behind ``J`` (one segment without them)."""
    sizes = [columns] if context.segments is None else [int(s) for s in context.segments]
    if sum(sizes) != columns:
        raise ValueError(f"segments sum to {sum(sizes)}, the Jacobian has {columns} columns")
    return sizes


class SegmentGramianAggregator(Aggregator):
    """An aggregator whose direction in every segment ``s`` of the columns (a parameter tensor at
    parameter level, the whole saliency at representation level) is ``Σ_t α_{s,t} J_s[t]``, with
    ``α`` (``S×T``) a function of the segments' Gramians ``K_s = J_s J_sᵀ`` and the losses only
    (GradVac, MetaBalance). Such a method writes :meth:`segment_weights`; :meth:`aggregate`
    follows, and at parameter level :func:`repmtl.backward` can pass it Gramians formed without
    ``J`` (``docs/formulas.md#methods-linear-layer-gramian``) and apply ``α`` itself."""

    def segment_weights(self, gramians: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        """``α`` (``S×T``) from the segments' Gramians (``S×T×T``, in ``context.segments`` order)."""
        raise NotImplementedError(f"method {self.name!r} does not define segment_weights()")

    def aggregate(self, jacobian: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        blocks = jacobian.split(segment_sizes(context, jacobian.shape[1]), dim=1)  # views of J
        weights = self.segment_weights(torch.stack([G.gramian(b) for b in blocks]), context)
        weights = weights.to(jacobian.dtype)
        return torch.cat([w @ block for w, block in zip(weights, blocks, strict=True)])


def default_level(cls: type[Method]) -> Level | None:
    """The level a method runs at when the caller names none (``None`` for a loss weighting)."""
    return cls.levels[0] if cls.levels else None


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two methods named {cls.name!r}")
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.__qualname__}.family must be one of {list(FAMILIES)}, got {cls.family!r}")
    if not issubclass(cls, (LossWeighting, GramianWeighting, Aggregator)):
        raise TypeError(f"{cls.__qualname__} must derive from LossWeighting, GramianWeighting or Aggregator")
    unknown = [level for level in cls.levels if level not in LEVELS]
    if unknown:
        raise ValueError(f"{cls.__qualname__}.levels has unknown levels {unknown}; choose from {list(LEVELS)}")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Method]]:
    return dict(sorted(_REGISTRY.items()))


def lookup(name: str) -> type[Method]:
    key = name.lower().replace("_", "-")
    if key not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]
