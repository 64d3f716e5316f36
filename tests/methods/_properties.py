"""Named property asserts for the methods, used by the registry-keyed table in
``tests/methods/test_properties.py``.

Each assert takes a method *name* and the drawn inputs, builds fresh instances through the
public API (``repmtl.methods.create``) and checks one property of the update the method asks
for: ``d = Jᵀα`` for a weighting (loss or Gramian), the aggregated direction for an aggregator.
"""

from __future__ import annotations

import io

import numpy as np
import torch

import repmtl
from repmtl import methods as M
from repmtl.methods.base import (
    Aggregator,
    GramianWeighting,
    JacobianContext,
    LossWeighting,
    TaskWeights,
)
from tests.conftest import tiny_losses, tiny_model

#: hyper-parameters that make a method runnable (``fixed``) or exercise its later phases within
#: a few steps and epochs (warm-ups of one epoch, a small SAC agent)
SMALL = {
    "fixed": lambda tasks: {"weights": [1.0 + 0.5 * i for i in range(tasks)]},
    "igbv1": lambda tasks: {"base_epoch": 0},
    "igbv2": lambda tasks: {
        "base_epoch": 0, "random_epochs": 1, "update_after_epochs": 1, "update_every": 2,
        "batch_size": 8, "hidden": (8,), "buffer_size": 16,
    },
    "stch": lambda tasks: {"warmup_epochs": 1},
    "nashmtl": lambda tasks: {"update_weights_every": 2},
}
#: Aligned-MTL's weights are a matrix function of K: eigenvector rounding grows with cond(K)
EIGEN_ROUNDING = {"alignedmtl", "alignedmtl-ub"}


def create(name: str, tasks: int) -> M.Method:
    hparams = SMALL[name](tasks) if name in SMALL else {}
    return M.create(name, tasks=[f"t{i}" for i in range(tasks)], **hparams)


def losses_for(jac: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Positive task losses, one per row (log-transformed for methods that require it)."""
    return torch.as_tensor(np.random.default_rng(seed).uniform(0.01, 10.0, size=jac.shape[0]), dtype=torch.float64)


def evaluate(method: M.Method, jac: np.ndarray, losses: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(α or None, d)`` for one call of the method on the Jacobian ``jac``."""
    j = torch.as_tensor(jac, dtype=torch.float64)
    if method.loss_transform.transform == "log":
        losses = losses.log()
    if isinstance(method, Aggregator):
        context = JacobianContext(losses=losses, level="parameters", segments=[j.shape[1]])
        return None, method.aggregate(j, context)
    if isinstance(method, GramianWeighting):
        result = TaskWeights.of(method.weights(j @ j.T, losses))
    else:
        assert isinstance(method, LossWeighting)
        result = TaskWeights.of(method.weights(losses))
    alpha = result.shared.detach().to(torch.float64)
    return alpha, alpha @ j


def assert_finite(name: str, jac: np.ndarray, seed: int) -> None:
    alpha, d = evaluate(create(name, jac.shape[0]), jac, losses_for(jac, seed))
    assert torch.isfinite(d).all()
    if alpha is not None:
        assert alpha.shape == (jac.shape[0],) and torch.isfinite(alpha).all()


def _permuted(name: str, jac: np.ndarray, perm: np.ndarray):
    losses = losses_for(jac)
    a, b = create(name, jac.shape[0]), create(name, jac.shape[0])
    torch.manual_seed(0)
    first = evaluate(a, jac, losses)
    torch.manual_seed(0)
    second = evaluate(b, jac[perm], losses[torch.as_tensor(perm)])
    converged = all(m.info.get("solver_converged", True) for m in (a, b))
    return first, second, converged


def assert_permutation_weights(name: str, jac: np.ndarray, perm: np.ndarray) -> None:
    """``α(PJ) = P α(J)``: the weights follow their tasks."""
    (a, _), (b, _), converged = _permuted(name, jac, perm)
    if not converged:
        return  # an unconverged iterate depends on the order
    tol = 1e-9
    if name in EIGEN_ROUNDING:
        eig = np.linalg.eigvalsh(jac @ jac.T)
        kept = eig[eig > eig.max() * len(eig) * np.finfo(float).eps]
        tol += 1e4 * np.finfo(float).eps * (kept.max() / kept.min() if kept.size else 1.0)
    np.testing.assert_allclose(b.numpy(), a.numpy()[perm], rtol=1e-6, atol=tol * float(a.abs().max()))


def assert_permutation_update(name: str, jac: np.ndarray, perm: np.ndarray) -> None:
    """``d(PJ) = d(J)``: the update does not depend on the order of the tasks."""
    (_, d_a), (_, d_b), converged = _permuted(name, jac, perm)
    if not converged:
        return
    scale = float(np.max(np.linalg.norm(jac, axis=1))) * max(1.0, float(d_a.abs().max()) / max(float(np.abs(jac).max()), 1e-300))
    np.testing.assert_allclose(d_b.numpy(), d_a.numpy(), atol=1e-6 * max(scale, float(d_a.abs().max())))


def _magnitude(jac: np.ndarray, alpha: torch.Tensor | None, d: torch.Tensor) -> float:
    """The size of the terms summed into ``d`` (``Σ_s |α_s| ‖g_s‖``): its rounding error scales
    with it, not with ``‖d‖`` (opposite gradients cancel to a rounding residue)."""
    norms = np.linalg.norm(jac, axis=1)
    terms = float(np.abs(alpha.numpy()) @ norms) if alpha is not None else 0.0
    return max(terms, float(d.abs().max()), float(norms.max()))


def assert_non_conflicting(name: str, jac: np.ndarray) -> None:
    """``g_tᵀ d ≥ 0`` for every task: no task's loss increases to first order."""
    method = create(name, jac.shape[0])
    alpha, d = evaluate(method, jac, losses_for(jac))
    if not method.info.get("solver_converged", True) or method.info.get("fallback", False):
        return  # a documented fallback promises nothing
    j = torch.as_tensor(jac, dtype=torch.float64)
    products = j @ d
    bound = 1e-9 * j.norm(dim=1) * _magnitude(jac, alpha, d)
    assert bool((products >= -bound).all()), f"{name}: g_t·d = {products.tolist()}"


#: methods whose update comes from an iterative solve certified to a tolerance, not to rounding:
#: the relative error (to ‖d‖) that tolerance allows (CAGrad: duality gap ≤ 1e-6 · ‖g_0‖(‖g_0‖ + c))
SOLVER_TOLERANCE = {"cagrad": 1e-5}


def assert_scale_equivariant(name: str, jac: np.ndarray, factor: float) -> None:
    """``d(cJ) = c·d(J)`` for ``c > 0``: the update is measured in the gradients' units."""
    losses = losses_for(jac)
    torch.manual_seed(0)
    alpha, d = evaluate(create(name, jac.shape[0]), jac, losses)
    torch.manual_seed(0)
    _, d_scaled = evaluate(create(name, jac.shape[0]), factor * jac, losses)
    atol = 1e-9 * factor * _magnitude(jac, alpha, d)
    if name in SOLVER_TOLERANCE:
        atol = max(atol, SOLVER_TOLERANCE[name] * factor * float(d.norm()))
    np.testing.assert_allclose(d_scaled.numpy(), factor * d.numpy(), rtol=1e-6, atol=atol)


def assert_loss_scale_invariant(name: str, jac: np.ndarray, factor: float) -> None:
    """``α(cL) = α(L)``: the weights ignore the losses' scale."""
    losses = losses_for(jac)
    torch.manual_seed(0)
    a, _ = evaluate(create(name, jac.shape[0]), jac, losses)
    torch.manual_seed(0)
    b, _ = evaluate(create(name, jac.shape[0]), jac, factor * losses)
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-9, atol=0)


def _train(model, method, optimizer, batch, level, steps: range) -> list[torch.Tensor]:
    """A few steps through ``repmtl.backward``; an epoch ends every second step."""
    seen = []
    for step in steps:
        torch.manual_seed(1000 + step)  # random methods draw the same in both runs
        optimizer.zero_grad(set_to_none=True)
        out, losses = tiny_losses(model, batch * (1 + 0.1 * step))
        record = repmtl.backward(losses, representation=out.representation, method=method, level=level)
        optimizer.step()
        seen.append(record.head_weights if record.weights is None else record.weights)
        if step % 2 == 1:
            method.end_epoch()
    return seen


def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_exact_resume(name: str, level: str | None, batch: torch.Tensor) -> None:
    """Train 4 steps, checkpoint (saved and loaded with ``weights_only=True``), continue 4 steps;
    a fresh model and an *unbound* method loaded from the checkpoint continue bit-identically."""

    def build(seed: int, bound: bool):
        model = tiny_model(3, seed=seed)
        method = create(name, 3) if bound else M.create(name, **(SMALL[name](3) if name in SMALL else {}))
        return model, method

    model, method = build(0, bound=True)
    optimizer = torch.optim.Adam([*model.parameters(), *method.parameters()], lr=0.05)
    _train(model, method, optimizer, batch, level, range(4))
    checkpoint = _round_trip({"model": model.state_dict(), "method": method.state_dict(), "optimizer": optimizer.state_dict()})
    expected = _train(model, method, optimizer, batch, level, range(4, 8))

    model2, method2 = build(1, bound=False)
    method2.load_state_dict(checkpoint["method"])  # binds itself from the checkpoint
    model2.load_state_dict(checkpoint["model"])
    optimizer2 = torch.optim.Adam([*model2.parameters(), *method2.parameters()], lr=0.05)
    optimizer2.load_state_dict(checkpoint["optimizer"])
    resumed = _train(model2, method2, optimizer2, batch, level, range(4, 8))
    for a, b in zip(expected, resumed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for p, q in zip([*model.parameters(), *method.parameters()], [*model2.parameters(), *method2.parameters()], strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
