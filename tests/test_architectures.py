"""The architectures of repmtl.nets.architectures: parameter groups checked against the autograd
graph, and one repmtl.backward step per method kind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import repmtl
from repmtl import methods as M
from repmtl.model import MultiTaskModel
from repmtl.nets.architectures import (
    ARCHITECTURES,
    build_architecture,
    check_architecture,
)
from repmtl.nets.small import ClassifierHead, SmallConvEncoder

TASKS = ("a", "b", "c")
NON_HPS = [name for name in ARCHITECTURES if name != "hps"]


def _model(seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    encoder = SmallConvEncoder(1, widths=(4, 6, 6))
    return MultiTaskModel(encoder, {t: ClassifierHead(6 * 2 * 2, 3, hidden=5) for t in TASKS})


def _build(name: str) -> nn.Module:
    return build_architecture(name, _model())


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 1, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)


def _grads(model: nn.Module, output: torch.Tensor) -> dict[int, torch.Tensor | None]:
    params = [p for p in model.parameters() if p.requires_grad]
    probe = torch.randn(output.shape, generator=torch.Generator().manual_seed(2))
    found = torch.autograd.grad((output * probe).sum(), params, retain_graph=True, allow_unused=True)
    return {id(p): g for p, g in zip(params, found, strict=True)}


def _reached(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_groups_partition_the_parameters(name):
    model = _build(name)
    shared = {id(p) for p in model.shared_parameters()}
    own = {t: {id(p) for p in model.task_parameters(t)} for t in TASKS}
    groups = [shared, *own.values()]
    assert sum(len(g) for g in groups) == len(set().union(*groups))  # disjoint
    assert set().union(*groups) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_each_task_depends_on_every_shared_parameter_and_only_its_own(name):
    model = _build(name).train()
    x, _ = _batch()
    output = model(x)
    shared = list(model.shared_parameters())
    for task in TASKS:
        grads = _grads(model, output.predictions[task])
        unreached = [tuple(p.shape) for p in shared if not _reached(grads[id(p)])]
        assert not unreached, f"{name}: task {task} does not depend on shared parameters {unreached}"
        assert all(_reached(grads[id(p)]) for p in model.task_parameters(task))
        for other in TASKS:
            if other != task:
                assert not any(_reached(grads[id(p)]) for p in model.task_parameters(other)), (task, other)


@pytest.mark.parametrize("name", NON_HPS)
def test_representation_is_one_z_per_task(name):
    x, _ = _batch()
    reps = _build(name)(x).representation
    assert isinstance(reps, dict) and set(reps) == set(TASKS)


def _step(name: str, method: str, level: str | None = None):
    """One step; returns the model, the record and each task's gradients taken before it."""
    model = _build(name).train()
    x, y = _batch()
    output = model(x)
    losses = {t: nn.functional.cross_entropy(output.predictions[t], y) for t in TASKS}
    shared = list(model.shared_parameters())
    before = {
        t: (torch.autograd.grad(losses[t], shared, retain_graph=True),
            torch.autograd.grad(losses[t], list(model.task_parameters(t)), retain_graph=True))
        for t in TASKS
    }
    record = repmtl.backward(
        losses, representation=output.representation, shared_params=shared,
        method=M.create(method, tasks=TASKS), level=level,
    )
    return model, record, before


@pytest.mark.parametrize("name", NON_HPS)
@pytest.mark.parametrize("method", ["ew", "mgda", "gradvac"])
def test_one_step_at_parameter_level(name, method):
    model, record, before = _step(name, method)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # task-specific modules (below and above Z_t) get their task's gradient times the heads' weight
    for i, task in enumerate(TASKS):
        for p, g in zip(model.task_parameters(task), before[task][1], strict=True):
            torch.testing.assert_close(p.grad, record.head_weights[i] * g, rtol=1e-4, atol=1e-7)
    if record.weights is not None:  # the shared parameters get Jᵀα
        for k, p in enumerate(model.shared_parameters()):
            expected = sum(w * before[t][0][k] for w, t in zip(record.weights, TASKS))
            torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", NON_HPS)
def test_representation_level_is_refused(name):
    with pytest.raises(ValueError, match="per-task representations"):
        _step(name, "mgda", level="representation")


def test_mtan_on_a_dilated_resnet():
    torch.manual_seed(0)
    from repmtl.nets.deeplab import build_deeplab

    model = build_architecture("mtan", build_deeplab({"seg": 3, "depth": 1}, encoder="resnet18", rates=(1, 2, 3)))
    out = model(torch.randn(2, 3, 16, 16))
    assert out.predictions["seg"].shape == (2, 3, 16, 16)
    assert out.representation["depth"].shape == (2, 512, 2, 2)


def test_bad_arguments_and_encoders_are_refused():
    with pytest.raises(ValueError, match="unknown architecture 'moe'"):
        build_architecture("moe", _model())
    with pytest.raises(ValueError, match="no argument"):
        check_architecture("mmoe", {"levels": 2})
    with pytest.raises(ValueError, match="expects a int"):
        check_architecture("mmoe", {"experts": "four"})
    with pytest.raises(ValueError, match="power of two"):
        build_architecture("dselect-k", _model(), experts=3)
    flat = MultiTaskModel(nn.Linear(4, 4), {t: nn.Linear(4, 1) for t in TASKS})
    with pytest.raises(ValueError, match="architecture 'mtan'.*convolutional stages"):
        build_architecture("mtan", flat)
    with pytest.raises(ValueError, match="architecture 'mmoe'.*image inputs"):
        build_architecture("mmoe", flat)
