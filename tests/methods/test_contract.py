"""The method contract: every registered method derives from exactly one of the three bases,
declares at most three behavioural attributes, and keeps its memory in ``state``."""

from __future__ import annotations

import pytest
import torch

from repmtl import methods as M
from repmtl.methods.base import (
    LEVELS,
    Aggregator,
    GramianWeighting,
    LossWeighting,
    Method,
)

BASES = (LossWeighting, GramianWeighting, Aggregator)
#: class attributes that describe a method without changing what it does
DESCRIPTIVE = {"name", "family", "description", "reference"}
#: the class attributes ``repmtl.backward`` and the trainer read (set by the bases: ``consumes``)
BEHAVIOURAL = {"levels", "loss_transform", "shared_optimizer"}


def _declared(cls: type[Method]) -> set[str]:
    """Public class attributes set by ``cls`` or a registered ancestor (not by the bases)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (*BASES, Method) or not issubclass(klass, Method):
            continue
        names |= {k for k, v in vars(klass).items() if not k.startswith("_") and not callable(v)
                  and not isinstance(v, property | staticmethod | classmethod)}
    return names


@pytest.mark.parametrize("name", sorted(M.available()))
def test_one_base_and_at_most_three_behavioural_attributes(name):
    cls = M.lookup(name)
    assert sum(issubclass(cls, base) for base in BASES) == 1
    declared = _declared(cls) - DESCRIPTIVE
    assert declared <= BEHAVIOURAL, f"{name} declares {sorted(declared - BEHAVIOURAL)}"
    assert len(declared) <= 3
    assert all(level in LEVELS for level in cls.levels)


def test_a_method_without_a_base_is_refused():
    with pytest.raises(TypeError, match="LossWeighting, GramianWeighting or Aggregator"):
        M.register(type("Bare", (Method,), {"name": "test-bare", "family": "hybrid"}))


def test_state_moves_with_the_module_and_refuses_pickled_objects():
    method = M.create("famo", tasks=["a", "b"])
    method.double()
    assert method.state.logits.dtype == torch.float64
    with pytest.raises(TypeError, match="without pickle"):
        method.state.solver = object()


def test_lazy_state_is_created_on_first_use_and_shape_checked():
    method = M.create("db-mtl", tasks=["a", "b"])
    assert method.state.grad_average is None
    first = method.state.zeros_like("grad_average", torch.ones(2, 5))
    assert first.shape == (2, 5)
    with pytest.raises(ValueError, match="changed since the first step"):
        method.state.zeros_like("grad_average", torch.ones(2, 6))
