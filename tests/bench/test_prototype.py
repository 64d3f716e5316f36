"""The Jᵀα prototype gives exactly the gradients of repmtl.backward for Gramian methods."""

import pytest
import torch

import repmtl
from repmtl import methods as M
from repmtl.bench.contenders import prototype_applies
from repmtl.bench.prototype import gramian_backward_jta
from tests.conftest import tiny_losses, tiny_model

GRAMIAN = [n for n in M.available() if prototype_applies(n)]


def _grads(module):
    return [None if p.grad is None else p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("name", GRAMIAN)
@pytest.mark.parametrize("vectorize", [True, False])
def test_prototype_matches_backward(name, vectorize):
    x = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    results = []
    for path in ("backward", "prototype"):
        model = tiny_model(3).double()
        method = M.create(name, tasks=list(model.task_names)).double()
        torch.manual_seed(1)  # methods that draw random numbers draw the same ones
        out, losses = tiny_losses(model, x)
        if path == "backward":
            repmtl.backward(losses, representation=out.representation, method=method, level="parameters", vectorize=vectorize)
        else:
            gramian_backward_jta(
                losses, representation=out.representation, shared_params=list(model.shared_parameters()),
                method=method, vectorize=vectorize,
            )
        results.append((_grads(model), _grads(method)))
    (model_a, method_a), (model_b, method_b) = results
    assert all(g is not None for g in model_b)
    for a, b in zip(model_a + method_a, model_b + method_b):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a)


def test_prototype_refuses_other_methods():
    model = tiny_model(2)
    out, losses = tiny_losses(model, torch.randn(2, 1, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="whole-encoder Gramian"):
        gramian_backward_jta(losses, representation=out.representation, shared_params=list(model.shared_parameters()),
                             method=M.create("ew"))
