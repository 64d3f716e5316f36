"""The regularizer protocol used by :func:`repmtl.backward`.

A regularizer adds differentiable penalty terms to the objective. Those that set
``needs_saliency`` receive the stacked task saliencies ``S = ∂L_t/∂Z`` (``T×B×…``) computed
**with the graph kept**, so their terms differentiate w.r.t. the heads and, through ``Z``,
the encoder (``docs/formulas.md#rep-mtl-saliency``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from repmtl.hparams import validated_init

#: where a penalty's gradient goes: everywhere (the exact gradient of the objective), only to
#: the shared representation (the encoder; heads get their task gradients only), or only to the
#: heads (the encoder gets the method's update only)
GradientFlow = Literal["exact", "representation", "heads"]
GRADIENT_FLOWS: tuple[GradientFlow, ...] = ("exact", "representation", "heads")


@dataclass(frozen=True)
class Penalty:
    """One term ``weight · value`` of the objective; ``value`` is logged as ``name``; ``flow``
    says which parameters its gradient reaches (:data:`GradientFlow`)."""

    name: str
    value: torch.Tensor
    weight: float
    flow: GradientFlow = "exact"


class Regularizer(nn.Module):
    name: ClassVar[str] = ""
    needs_saliency: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # validate the declared hyper-parameters (unknown names included) before the body runs
        cls.__init__ = validated_init(cls.__init__, lambda c: f"regularizer {c.name!r}")

    def forward(self, saliency: torch.Tensor, losses: torch.Tensor, *, multi_input: bool = False) -> list[Penalty]:
        """Penalties from saliencies ``(T, B, …)`` and the task losses ``(T,)``.

        ``multi_input``: each task had its own batch (``S_t = ∂L_t/∂Z_t``); sample ``b`` of
        every task's batch is paired by position in the stacked saliencies."""
        raise NotImplementedError


_REGISTRY: dict[str, type[Regularizer]] = {}


def register_regularizer(cls: type[Regularizer]) -> type[Regularizer]:
    """Class decorator adding a regularizer to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def regularizer_registry() -> dict[str, type[Regularizer]]:
    return dict(sorted(_REGISTRY.items()))
