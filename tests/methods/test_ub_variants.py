"""MGDA-UB and Aligned-MTL-UB: the base methods fixed to the representation level."""

import pytest
import torch

import repmtl
from repmtl import methods as M
from repmtl.methods.alignedmtl import AlignedMTL
from repmtl.methods.mgda import MGDA
from tests.conftest import tiny_losses, tiny_model


@pytest.mark.parametrize(("name", "base"), [("mgda-ub", MGDA), ("alignedmtl-ub", AlignedMTL)])
def test_registered_as_representation_level_subclasses(name, base):
    cls = M.lookup(name)
    assert issubclass(cls, base) and cls is not base
    assert cls.levels == ("representation",) and M.default_level(cls) == "representation"
    assert cls.weights is base.weights  # no duplicated solver code


@pytest.mark.parametrize("name", ["mgda-ub", "alignedmtl-ub"])
def test_parameter_level_is_refused_with_a_clear_error(name, batch):
    model = tiny_model()
    out, losses = tiny_losses(model, batch)
    with pytest.raises(ValueError, match=f"{name}.*undefined at level 'parameters'"):
        repmtl.backward(losses, representation=out.representation, method=name, level="parameters")


@pytest.mark.parametrize(("name", "base"), [("mgda-ub", "mgda"), ("alignedmtl-ub", "alignedmtl")])
def test_same_update_as_the_base_method_at_representation_level(name, base, batch):
    grads = []
    for method in (name, base):
        model = tiny_model(3)
        out, losses = tiny_losses(model, batch)
        repmtl.backward(losses, representation=out.representation, method=method, level="representation")
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
