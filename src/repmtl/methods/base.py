"""The method protocol and the registry (``docs/architecture.md``, "Methods").

A method turns what it ``needs`` into the update of the shared parameters:

* ``needs = "losses"``: ``weights(None, losses) -> α`` (loss scaling).
* ``needs = "gramian"``: ``weights(K, losses) -> α`` from the ``T×T`` Gramian ``K = J Jᵀ``;
  the shared update is ``Jᵀα``, applied by one backward of ``Σ α_t L_t``.
* ``needs = "jacobian"``: ``direction(J, losses, segments) -> d``, a combined direction in
  the Jacobian's column space (``d`` entries at parameter level, one per representation entry
  at representation level).

Heads receive ``α_t ∇L_t`` when the method defines weights and ``weights_heads`` is true,
otherwise their plain task gradient. Every piece of state lives in buffers, parameters or
``get_extra_state`` so that ``state_dict()`` resumes a run exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import nn

from repmtl.hparams import validated_init

Need = Literal["losses", "gramian", "jacobian"]
Level = Literal["parameters", "representation"]
Scope = Literal["all", "last_layer"]
LEVELS: tuple[Level, ...] = ("parameters", "representation")


class Method(nn.Module):
    """Base class of every multi-task optimisation method.

    Subclasses set the class attributes and implement ``weights`` or ``direction``.
    ``setup(num_tasks)`` runs once when the method first meets its tasks (``bind``); create
    buffers and learnable parameters there.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[Need] = "losses"
    levels: ClassVar[tuple[Level, ...]] = LEVELS
    #: the level the trainer uses when the user gives none (e.g. "representation" for MGDA-UB)
    default_level: ClassVar[Level] = "parameters"
    #: which shared parameters the parameter-level Jacobian/Gramian is taken over
    scope: ClassVar[Scope] = "all"
    #: heads get α_t ∇L_t (True) or their plain task gradient (False)
    weights_heads: ClassVar[bool] = True
    #: the loss transform the method's paper prescribes ("log" for DB-MTL); used by
    #: ``backward`` when the caller does not choose one
    loss_transform: ClassVar[Literal["none", "log"]] = "none"
    #: refuse a caller's loss transform that differs from ``loss_transform`` (the weights are
    #: defined on transformed losses, e.g. FAMO, STCH, IGB)
    requires_loss_transform: ClassVar[bool] = False
    #: ``direction`` also receives ``representation=Z`` (detached) at representation level
    wants_representation: ClassVar[bool] = False
    #: buffers whose shape is only known after the first step; loading a checkpoint reshapes them
    lazy_state: ClassVar[tuple[str, ...]] = ()
    #: python scalars (step counters, flags) kept in the extra state: reading them needs no
    #: host sync, and ``state_dict()`` still resumes them exactly
    counters: ClassVar[tuple[str, ...]] = ()
    #: the optimizer the shared parameters need when the method is itself an optimizer
    #: (MTAdam: plain SGD on its step); ``None``: the trainer's optimizer
    shared_optimizer: ClassVar[str | None] = None
    #: the method learns parameters that an optimizer must update (e.g. UW's log-variances)
    learnable: ClassVar[bool] = False
    #: "loss scaling", "gradient manipulation", "hybrid", "random gradient"
    #: (``docs/formulas.md#methods-families``)
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # validate the declared hyper-parameters (unknown names included) before the body runs
        cls.__init__ = validated_init(cls.__init__, lambda c: f"method {c.name!r}")

    def __init__(self) -> None:
        super().__init__()
        self.task_names: tuple[str, ...] | None = None
        #: what the last call wants logged (solver fallbacks, step sizes, ...); tensors allowed
        self.info: dict[str, object] = {}

    @property
    def num_tasks(self) -> int:
        if self.task_names is None:
            raise RuntimeError(f"method {self.name!r} is not bound to tasks yet; call bind(task_names)")
        return len(self.task_names)

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
        """Create per-task state. Default: nothing."""

    def check_level(self, level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; choose one of {list(LEVELS)}")
        if self.needs != "losses" and level not in self.levels:
            raise ValueError(
                f"method {self.name!r} is undefined at level {level!r}; it supports {list(self.levels)}"
            )

    def weights(self, gramian: torch.Tensor | None, losses: torch.Tensor | None = None) -> torch.Tensor:
        """Task weights ``α`` (``T``) from the Gramian and/or the (detached) losses."""
        raise NotImplementedError(f"method {self.name!r} does not define weights()")

    def direction(
        self, jacobian: torch.Tensor, losses: torch.Tensor, segments: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Combined update direction from the ``T×n`` Jacobian. ``segments`` lists the sizes of
        the parameter tensors that make up the columns (parameter level only)."""
        raise NotImplementedError(f"method {self.name!r} does not define direction()")

    def head_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """Weights of the heads' task gradients, given the shared weights ``α``. Default: ``α``
        itself when ``weights_heads`` (the identity matters: ``backward`` then needs one plain
        backward), else ones. Override where the paper weights heads differently from the shared
        update (IMTL: ``e^{s}``; Nash-MTL: ``α`` before its norm clip)."""
        return weights if self.weights_heads else torch.ones_like(weights)

    def lazy_buffer(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The ``lazy_state`` buffer ``name``, created as zeros shaped like ``like`` on the first
        step (its width is only known then); a later step of another shape is refused."""
        buffer = getattr(self, name)
        if buffer.numel() == 0 and buffer.shape != like.shape:
            buffer = torch.zeros_like(like)
            setattr(self, name, buffer)
        elif buffer.shape != like.shape:
            raise ValueError(
                f"method {self.name!r} keeps {name} of shape {tuple(buffer.shape)}, this step gives "
                f"{tuple(like.shape)}; the shared parameters (or the level) changed since the first step"
            )
        return buffer

    def extra_loss(self) -> torch.Tensor | None:
        """A term added to the objective for the method's own learnable parameters."""
        return None

    def end_epoch(self) -> None:
        """Called after each training epoch (by the trainer, or by a custom loop)."""

    def get_extra_state(self) -> dict:
        return {"task_names": self.task_names, **{name: getattr(self, name) for name in self.counters}}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Bind an unbound method from the checkpoint before its per-task buffers load, and give
        # first-step-shaped buffers (``lazy_state``) the checkpoint's shape.
        extra = state_dict.get(prefix + "_extra_state")
        if self.task_names is None and isinstance(extra, dict) and extra.get("task_names"):
            self.bind(extra["task_names"])
        for name in self.lazy_state:
            key = prefix + name
            if key in state_dict and name in self._buffers and self._buffers[name] is not None:
                self._buffers[name] = torch.empty_like(state_dict[key], device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_extra_state(self, state: dict) -> None:
        names = state.get("task_names")
        if names is not None and self.task_names is not None and tuple(names) != self.task_names:
            raise ValueError(
                f"checkpoint of method {self.name!r} is for tasks {list(names)}, not {list(self.task_names)}"
            )
        if names is not None and self.task_names is None:
            self.bind(names)
        for name in self.counters:
            setattr(self, name, state[name])

    def extra_repr(self) -> str:
        return f"needs={self.needs}, tasks={self.task_names}"


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two methods named {cls.name!r}")
    if cls.family not in ("loss scaling", "gradient manipulation", "hybrid", "random gradient"):
        raise ValueError(
            f"{cls.__qualname__}.family must be one of 'loss scaling', 'gradient manipulation', 'hybrid', "
            f"'random gradient', got {cls.family!r}"
        )
    if cls.needs not in ("losses", "gramian", "jacobian"):
        raise ValueError(f"{cls.__qualname__}.needs must be losses, gramian or jacobian")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Method]]:
    return dict(sorted(_REGISTRY.items()))


def lookup(name: str) -> type[Method]:
    key = name.lower().replace("_", "-")
    if key not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]

