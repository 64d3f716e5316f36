"""Rep-MTL's gradient-flow options, each against its literal definition by end-to-end
``create_graph`` autograd, and the penalty-to-task gradient scale ``repmtl.backward`` measures."""

from __future__ import annotations

import pytest
import torch

import repmtl
from repmtl.regularizers import RepMTL
from tests.conftest import tiny_losses, tiny_model
from tests.test_repmtl import naive_csa, naive_tsr


def _parts(model, x, regularizer):
    """``(task objective, {name: λ·penalty}, Z)`` with naive penalties on log losses (EW)."""
    out, losses = tiny_losses(model, x)
    terms = torch.log(torch.stack(list(losses.values())))
    z = out.representation
    s = torch.stack([torch.autograd.grad(terms[t], z, create_graph=True)[0] for t in range(len(terms))])
    penalties = {"tsr": regularizer.lambda_tsr * naive_tsr(s), "csa": regularizer.lambda_csa * naive_csa(s, regularizer.tau)}
    return terms.sum(), penalties, z


def _literal(flow, batch, regularizer):
    """The definition of each option: ``exact`` differentiates the whole objective everywhere;
    ``representation`` gives the heads only the task objective's gradient; ``heads`` gives the
    encoder only the task objective's gradient."""
    model = tiny_model(batchnorm=False)
    heads, encoder = list(model.task_parameters()), list(model.shared_parameters())
    task, penalties, _ = _parts(model, batch, regularizer)
    full = task + sum(penalties.values())
    head_objective = full if flow in ("exact", "heads") else task
    encoder_objective = full if flow in ("exact", "representation") else task
    expected = dict(zip(map(id, heads), torch.autograd.grad(head_objective, heads, retain_graph=True)))
    expected |= dict(zip(map(id, encoder), torch.autograd.grad(encoder_objective, encoder)))
    return [expected[id(p)] for p in model.parameters()]


@pytest.mark.parametrize("measure", [False, True])
@pytest.mark.parametrize("flow", ["exact", "representation", "heads"])
def test_each_gradient_flow_equals_its_definition(flow, measure, batch):
    regularizer = RepMTL(lambda_tsr=1.1, lambda_csa=0.7, tau=0.5, gradient_flow=flow)
    expected = _literal(flow, batch, regularizer)
    model = tiny_model(batchnorm=False)
    out, losses = tiny_losses(model, batch)
    repmtl.backward(losses, representation=out.representation, method="ew", regularizers=[regularizer],
                    loss_transform="log", eps=0.0, measure_penalties=measure)
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e)


@pytest.mark.parametrize("flow", ["exact", "representation", "heads"])
def test_penalty_scale_is_the_applied_gradient_over_the_task_gradient(flow, batch):
    regularizer = RepMTL(tau=0.5, gradient_flow=flow)
    model = tiny_model(batchnorm=False)
    heads = list(model.task_parameters())
    task, penalties, z = _parts(model, batch, regularizer)
    task_z = torch.autograd.grad(task, z, retain_graph=True)[0].norm()
    task_heads = torch.cat([g.flatten() for g in torch.autograd.grad(task, heads, retain_graph=True)]).norm()
    expected = {}
    for name, value in penalties.items():
        at_z = torch.autograd.grad(value, z, retain_graph=True)[0].norm()
        at_heads = torch.cat([g.flatten() for g in torch.autograd.grad(value, heads, retain_graph=True)]).norm()
        expected[f"{name}/encoder"] = at_z / task_z if flow != "heads" else torch.zeros((), dtype=torch.float64)
        expected[f"{name}/heads"] = at_heads / task_heads if flow != "representation" else torch.zeros((), dtype=torch.float64)

    model = tiny_model(batchnorm=False)
    out, losses = tiny_losses(model, batch)
    record = repmtl.backward(losses, representation=out.representation, method="ew", regularizers=[regularizer],
                             loss_transform="log", eps=0.0, measure_penalties=True)
    assert set(record.penalty_scale) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(record.penalty_scale[key], value.to(torch.float64))


def test_no_scale_without_measuring_or_without_penalties(batch):
    model = tiny_model(batchnorm=False)
    out, losses = tiny_losses(model, batch)
    record = repmtl.backward(losses, representation=out.representation, method="ew", regularizers=[RepMTL()])
    assert record.penalty_scale == {}
    out, losses = tiny_losses(model, batch)
    assert repmtl.backward(losses, representation=out.representation, measure_penalties=True).penalty_scale == {}


def test_unknown_gradient_flow_is_refused():
    with pytest.raises(ValueError, match="gradient_flow"):
        RepMTL(gradient_flow="encoder")
