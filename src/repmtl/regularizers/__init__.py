"""Regularizers of the multi-task objective (Rep-MTL's TSR/CSA, CosReg), found by name."""

from __future__ import annotations

import importlib
import pkgutil

from repmtl.regularizers.base import (
    Penalty,
    Regularizer,
    register_regularizer,
    regularizer_registry,
)
from repmtl.regularizers.cosreg import CosReg
from repmtl.regularizers.repmtl import RepMTL, csa_loss, tsr_loss

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def available() -> dict[str, type[Regularizer]]:
    return regularizer_registry()


def lookup(name: str) -> type[Regularizer]:
    registry = regularizer_registry()
    if name not in registry:
        raise KeyError(f"unknown regularizer {name!r}; available: {', '.join(registry) or 'none'}")
    return registry[name]


def create(name: str, **hparams: object) -> Regularizer:
    """Instantiate a regularizer by name. Unknown names, unknown hyper-parameters and refused
    values raise (a ``KeyError`` or a :class:`~repmtl.hparams.HyperparameterError`)."""
    return lookup(name)(**hparams)


__all__ = ["CosReg", "Penalty", "Regularizer", "RepMTL", "available", "create", "csa_loss", "lookup", "register_regularizer", "tsr_loss"]
