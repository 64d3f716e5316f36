"""The property harness: one table saying which properties each registered method promises, and
one test per property over the methods that promise it (asserts in ``_properties.py``).

A registered method missing from the table fails :func:`test_every_registered_method_is_in_the_table`,
so a new method cannot land without saying what it promises. Properties:

* ``finite``: finite weights and update on degenerate inputs (zero rows, duplicated tasks,
  norms spread over four orders of magnitude, scales 1e-8 … 1e8), for 1–16 tasks;
* ``permutation_weights``: ``α(PJ) = Pα(J)``; ``permutation_update``: ``d(PJ) = d(J)`` (where
  ties between duplicated tasks leave the weights free but fix the update);
* ``non_conflicting``: ``g_tᵀd ≥ 0`` for every task (outside documented fallbacks);
* ``scale_equivariant``: ``d(cJ) = c·d(J)``; ``loss_scale_invariant``: ``α(cL) = α(L)``;
* ``exact_resume``: a checkpoint loaded into a fresh model and an unbound method continues
  bit-identically — promised by every method.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import repmtl
from repmtl import methods as M
from repmtl.methods.base import GramianWeighting
from tests.conftest import tiny_losses, tiny_model
from tests.methods import _properties as P
from tests.methods._helpers import PROPERTY, gram, jacobians, weights_of

F, PW, PU, NC, SE, LS = (
    "finite", "permutation_weights", "permutation_update", "non_conflicting", "scale_equivariant", "loss_scale_invariant",
)
#: what each registered method promises (``exact_resume`` is promised by all)
PROMISES: dict[str, set[str]] = {
    "alignedmtl": {F, PW, SE},
    "alignedmtl-ub": {F, PW, SE},
    "avgnorm": {F, PW, SE},
    "cagrad": {F, PU, SE},
    "db-mtl": {F, PU, SE},
    "dwa": {F, PW, SE},
    "ew": {F, PW, SE, LS},
    "famo": {F, PW, SE},
    "fairgrad": {F, PW, NC},
    "fixed": {F, SE, LS},
    "gls": {F, PW, SE, LS},
    "graddrop": {F},
    "gradnorm": {F, PW},
    "gradvac": {F},
    "igbv1": {F, PW, SE},
    "igbv2": {F, SE},
    "imtl": {F, PW, SE},
    "imtl-g": {F, PW, SE},
    "imtl-l": {F, PW, SE, LS},
    "metabalance": {F, SE},
    "mgda": {F, PU, NC},
    "mgda-ub": {F, PU, NC},
    "moco": {F, PU},
    "mtadam": {F},
    "nashmtl": {F, PW, NC},
    "pcgrad": {F, SE},
    "rgw": {F, SE, LS},
    "rlw": {F, SE, LS},
    "stch": {F, PW, SE},
    "upgrad": {F, PU, NC, SE},
    "uw": {F, PW, SE, LS},
}
PROPERTIES = {F, PW, PU, NC, SE, LS}


def promised(prop: str) -> list[str]:
    return sorted(name for name, props in PROMISES.items() if prop in props)


def test_every_registered_method_is_in_the_table():
    assert set(PROMISES) == set(M.available()), (
        f"missing from PROMISES: {sorted(set(M.available()) - set(PROMISES))}; "
        f"not registered: {sorted(set(PROMISES) - set(M.available()))}"
    )
    assert all(props <= PROPERTIES for props in PROMISES.values())
    assert all(not {PW, PU} <= props for props in PROMISES.values()), "PW implies PU: list the stronger one only"


@pytest.mark.parametrize("name", promised(F))
@PROPERTY
@given(jac=jacobians(max_tasks=16), seed=st.integers(0, 2**16))
def test_finite(name, jac, seed):
    P.assert_finite(name, jac, seed)


@pytest.mark.parametrize("name", promised(PW))
@PROPERTY
@given(jac=jacobians(max_tasks=10), perm_seed=st.integers(0, 2**16))
def test_permutation_equivariant_weights(name, jac, perm_seed):
    P.assert_permutation_weights(name, jac, np.random.default_rng(perm_seed).permutation(jac.shape[0]))


@pytest.mark.parametrize("name", promised(PU) + promised(PW))
@PROPERTY
@given(jac=jacobians(max_tasks=10), perm_seed=st.integers(0, 2**16))
def test_permutation_invariant_update(name, jac, perm_seed):
    P.assert_permutation_update(name, jac, np.random.default_rng(perm_seed).permutation(jac.shape[0]))


@pytest.mark.parametrize("name", promised(NC))
@PROPERTY
@given(jac=jacobians(max_tasks=8))
def test_non_conflicting(name, jac):
    P.assert_non_conflicting(name, jac)


@pytest.mark.parametrize("name", promised(SE))
@PROPERTY
@given(jac=jacobians(max_tasks=8, structure=False), factor=st.sampled_from([1e-3, 0.5, 7.0, 1e3]))
def test_scale_equivariant_update(name, jac, factor):
    P.assert_scale_equivariant(name, jac, factor)


@pytest.mark.parametrize("name", promised(LS))
@PROPERTY
@given(jac=jacobians(max_tasks=8), factor=st.sampled_from([1e-3, 0.5, 7.0, 1e3]))
def test_loss_scale_invariant_weights(name, jac, factor):
    P.assert_loss_scale_invariant(name, jac, factor)


def _resume_cases() -> list[tuple[str, str | None]]:
    cases = []
    for name, cls in M.available().items():
        cases.append((name, None))  # the method's default level
        if "representation" in cls.levels and M.default_level(cls) != "representation":
            cases.append((name, "representation"))
    return cases


@pytest.mark.parametrize(("name", "level"), _resume_cases())
def test_exact_resume(name, level, batch):
    P.assert_exact_resume(name, level, batch)


# ---- Gramian weightings ------------------------------------------------------------------

GRAMIAN = sorted(name for name, cls in M.available().items() if issubclass(cls, GramianWeighting))


@pytest.mark.parametrize("name", GRAMIAN)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gramian_gives_finite_weights(name, bad):
    k = torch.eye(3, dtype=torch.float64)
    k[0, 1] = k[1, 0] = bad
    method = P.create(name, 3)
    alpha = method.weights(k, torch.ones(3, dtype=torch.float64))
    alpha = alpha.shared if hasattr(alpha, "shared") else alpha
    assert torch.all(torch.isfinite(alpha))
    if name not in ("gradnorm", "avgnorm"):  # no solver: they zero non-finite norms on the device
        assert method.info["fallback"] is True


def _per_task_gradients(model, batch, params):
    _out, losses = tiny_losses(model, batch)
    return [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) for loss in losses.values()]


def _backward_cases() -> list[tuple[str, str]]:
    return [(name, level) for name in GRAMIAN for level in M.lookup(name).levels]


@pytest.mark.parametrize(("name", "level"), _backward_cases())
def test_backward_applies_the_returned_weights(name, level, batch):
    """The shared parameters get ``Σ_t α_t ∇L_t``, each head ``w_t ∇L_t`` with the heads'
    weights the method returned (a copy of the method, fed the step's Gramian, says which)."""
    model = tiny_model(3)
    shared = list(model.shared_parameters())
    method = P.create(name, 3)
    twin = copy.deepcopy(method)
    out, losses = tiny_losses(model, batch)
    record = repmtl.backward(losses, representation=out.representation, method=method, level=level)
    alpha = record.weights
    assert torch.all(torch.isfinite(alpha))
    got_shared = [p.grad.clone() for p in shared]
    got_heads = {t: [p.grad.clone() for p in model.task_parameters(t)] for t in model.task_names}

    per_task = _per_task_gradients(model, batch, shared)
    for i in range(len(shared)):
        torch.testing.assert_close(got_shared[i], sum(alpha[t] * per_task[t][i] for t in range(3)))
    expected = M.TaskWeights.of(twin.weights(record.gramian, torch.stack(list(losses.values())).detach()))
    torch.testing.assert_close(record.head_weights, expected.for_heads.detach().to(record.head_weights))
    for t, task in enumerate(model.task_names):
        params = list(model.task_parameters(task))
        out, losses = tiny_losses(model, batch)
        grads = torch.autograd.grad(list(losses.values())[t], params)
        for g, e in zip(got_heads[task], grads, strict=True):
            torch.testing.assert_close(g, record.head_weights[t] * e)


@pytest.mark.parametrize("name", GRAMIAN)
def test_single_task(name):
    alpha = weights_of(P.create(name, 1), gram(np.array([[3.0, 4.0]])))
    assert alpha.shape == (1,) and np.isfinite(alpha[0]) and alpha[0] > 0
