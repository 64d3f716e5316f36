"""Multi-task optimisation methods, one file each, found by name.

>>> from repmtl import methods
>>> m = methods.create("mgda")
>>> "ew" in methods.available()
True
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence

from repmtl.methods.base import (
    LEVELS,
    Aggregator,
    GramianWeighting,
    JacobianContext,
    LossWeighting,
    Method,
    SegmentGramianAggregator,
    TaskWeights,
    default_level,
    lookup,
    plain_heads,
    prefers,
    register,
    registry,
    requires,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def available() -> dict[str, type[Method]]:
    """Registered methods by name (sorted)."""
    return registry()


def create(name: str, tasks: Sequence[str] | None = None, **hparams: object) -> Method:
    """Instantiate a method by name with its hyper-parameters.

    ``tasks`` binds the method to its task names at once; methods with learnable parameters
    (UW, IMTL, GradNorm: ``method.learnable``) must be bound before their parameters go to an
    optimizer.
    Unknown hyper-parameters and refused values raise a
    :class:`~repmtl.hparams.HyperparameterError` naming the method, the argument, what it
    expects and the value given.
    """
    method = lookup(name)(**hparams)
    if tasks is not None:
        method.bind(tasks)
    return method


__all__ = [
    "LEVELS",
    "Aggregator",
    "GramianWeighting",
    "JacobianContext",
    "LossWeighting",
    "Method",
    "SegmentGramianAggregator",
    "TaskWeights",
    "available",
    "create",
    "default_level",
    "lookup",
    "plain_heads",
    "prefers",
    "register",
    "requires",
]
