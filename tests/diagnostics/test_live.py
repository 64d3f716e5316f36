"""step_diagnostics / layer_alphas on real repmtl.backward records, against Gramians and
saliencies computed independently with one autograd call per task."""

import math

import pytest
import torch
from torch import nn

import repmtl
from repmtl.diagnostics import (
    condition_number,
    cosine_to_update,
    feature_disentanglement,
    gds,
    gms,
    layer_alphas,
    step_diagnostics,
)
from repmtl.methods.base import Aggregator
from repmtl.model import MultiTaskModel
from tests.conftest import tiny_losses, tiny_model


def _reference_saliency(model, x):
    out, losses = tiny_losses(model, x)
    z = out.representation
    return torch.stack([torch.autograd.grad(losses[t], z, retain_graph=True)[0] for t in model.task_names])


def _reference_param_grads(model, x):
    rows = []
    for t in model.task_names:
        model.zero_grad()
        _, losses = tiny_losses(model, x)
        losses[t].backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()]))
    model.zero_grad()
    return torch.stack(rows)


class SumDirection(Aggregator):
    """A direction method (no weights): the plain sum of the task gradients."""

    name = "test-sum-direction"

    def aggregate(self, jacobian, context):
        return jacobian.sum(0)


def _record(model, x, method, **kwargs):
    out, losses = tiny_losses(model, x)
    rec = repmtl.backward(losses, representation=out.representation, method=method, **kwargs)
    model.zero_grad()
    return rec


def test_representation_level_from_saliency(batch):
    model = tiny_model(num_tasks=3)
    s = _reference_saliency(model, batch)
    rec = _record(model, batch, "ew", keep_saliency=True)
    d = step_diagnostics(rec)
    assert d["diag/level"] == "representation"
    flat = s.reshape(3, -1)
    k = flat @ flat.T
    torch.testing.assert_close(d["diag/gds"], gds(k))
    torch.testing.assert_close(d["diag/gms"], gms(k))
    torch.testing.assert_close(d["diag/cond"], condition_number(k))
    torch.testing.assert_close(d["diag/fd"], feature_disentanglement(s))
    update = flat.sum(0)  # EW: α = 1
    for i, t in enumerate(model.task_names):
        torch.testing.assert_close(d[f"diag/norm/{t}"], flat[i].norm())
        torch.testing.assert_close(d[f"diag/cos/{t}"], torch.dot(flat[i], update) / (flat[i].norm() * update.norm()))
        assert d[f"weight/{t}"].item() == 1.0
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for k, v in d.items() if k != "diag/level")


def test_parameter_level_gramian_is_reused(batch):
    model = tiny_model(num_tasks=2)
    j = _reference_param_grads(model, batch)
    rec = _record(model, batch, "mgda", keep_saliency=True)
    assert rec.gramian is not None
    d = step_diagnostics(rec)
    assert d["diag/level"] == "parameters"
    k = j @ j.T
    torch.testing.assert_close(d["diag/gds"], gds(k))
    torch.testing.assert_close(d["diag/gms"], gms(k))
    torch.testing.assert_close(d["diag/cos/t0"], cosine_to_update(k, rec.weights)[0])
    # forcing the representation level measures every method the same way
    forced = step_diagnostics(rec, level="representation")
    assert forced["diag/level"] == "representation"
    s = _reference_saliency(model, batch).reshape(2, -1)
    torch.testing.assert_close(forced["diag/gds"], gds(s @ s.T))


def test_what_is_missing_is_left_out(batch):
    model = tiny_model(num_tasks=2)
    rec = _record(model, batch, "ew")  # no saliency, no Gramian
    assert set(step_diagnostics(rec)) == {"weight/t0", "weight/t1"}
    with pytest.raises(ValueError, match="keep_saliency"):
        step_diagnostics(rec, level="representation")
    rec = _record(model, batch, "ew", keep_saliency=True)
    multi = step_diagnostics(rec, multi_input=True)
    assert "diag/gds" not in multi and "diag/fd" in multi
    direction = _record(model, batch, SumDirection(), keep_saliency=True)
    assert direction.weights is None  # a direction method: no α, so no cosine to Jᵀα
    keys = set(step_diagnostics(direction))
    assert {"diag/gds", "diag/fd", "diag/norm/t0"} <= keys
    assert not any(k.startswith(("diag/cos/", "weight/")) for k in keys)


def test_no_host_sync(batch, monkeypatch):
    """Nothing in step_diagnostics may read a tensor's value on the host or call a LAPACK /
    cuSOLVER routine that checks its status with a sync on CUDA."""
    model = tiny_model(num_tasks=3)
    rec = _record(model, batch, "mgda", keep_saliency=True)

    def refuse(*args, **kwargs):
        raise AssertionError("host synchronisation inside step_diagnostics")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for name in ("eigh", "eigvalsh", "svd", "svdvals", "eig", "cond", "matrix_rank"):
        monkeypatch.setattr(torch.linalg, name, refuse)
    d = step_diagnostics(rec)
    d_rep = step_diagnostics(rec, level="representation")
    monkeypatch.undo()
    assert math.isfinite(float(d["diag/gds"])) and math.isfinite(float(d_rep["diag/fd"]))


def test_layer_alphas_keys_and_means():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(16, 48), nn.ReLU(), nn.Linear(48, 48))
    heads = {"x": nn.Sequential(nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 3)), "y": nn.Linear(48, 20)}
    alphas = layer_alphas(MultiTaskModel(encoder, heads))
    assert set(alphas) == {
        "alpha/encoder/0", "alpha/encoder/2", "alpha/head/x/0", "alpha/head/y/weight",
        "alpha/encoder_mean", "alpha/head_mean/x", "alpha/head_mean/y",
    }
    assert alphas["alpha/encoder_mean"] == pytest.approx((alphas["alpha/encoder/0"] + alphas["alpha/encoder/2"]) / 2)
    assert alphas["alpha/head_mean/x"] == pytest.approx(alphas["alpha/head/x/0"])
    assert "alpha/head/x/2" not in alphas  # Linear(32, 3): 3 eigenvalues < min_evals
    assert all(isinstance(v, float) and v > 1 for v in alphas.values())
