"""Shared helpers for the method tests: random Jacobians (hypothesis) and method evaluation."""

from __future__ import annotations

import os

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from repmtl import methods as M
from repmtl.methods.base import JacobianContext, TaskWeights


def context(
    losses: torch.Tensor | None = None, segments: list[int] | None = None, representation: torch.Tensor | None = None
) -> JacobianContext:
    """An aggregator's context as ``repmtl.backward`` builds it (parameter level when segments
    are given or no representation is, representation level otherwise). ``losses=None``: an
    empty tensor, for aggregators that do not read the losses."""
    losses = torch.empty(0) if losses is None else losses
    level = "representation" if representation is not None else "parameters"
    return JacobianContext(losses=losses, level=level, segments=segments, representation=representation)


def shared_weights(result: torch.Tensor | TaskWeights) -> torch.Tensor:
    """The shared weights ``α`` of a weighting's result (a tensor or :class:`TaskWeights`)."""
    return TaskWeights.of(result).shared

#: a small, fast budget for property tests (each example is a T×T problem); raise it for a stress
#: run with REPMTL_HYPOTHESIS_EXAMPLES=400
PROPERTY = settings(
    max_examples=int(os.environ.get("REPMTL_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SCALES = [1e-8, 1e-4, 1.0, 1e4, 1e8]


@st.composite
def jacobians(
    draw,
    min_tasks: int = 1,
    max_tasks: int = 8,
    max_dim: int = 12,
    structure: bool = True,
    full_row_rank: bool = False,
) -> np.ndarray:
    """A ``T×d`` Jacobian at one of the scales 1e-8 … 1e8.

    ``structure``: may contain a zero row, a duplicated task, a common component (aligned
    tasks) and per-task norms spread over four orders of magnitude. ``full_row_rank``: ``T ≤ d``
    and no zero / duplicated rows (generic full row rank).
    """
    num_tasks = draw(st.integers(min_tasks, max_tasks))
    low_dim = num_tasks if full_row_rank else 1
    dim = draw(st.integers(low_dim, max(low_dim, max_dim)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    jac = rng.standard_normal((num_tasks, dim))
    if draw(st.booleans()):
        jac *= 10.0 ** rng.uniform(-2, 2, size=(num_tasks, 1))
    if draw(st.booleans()):
        jac += rng.standard_normal(dim) * draw(st.sampled_from([0.5, 3.0]))
    if structure and not full_row_rank and num_tasks > 1:
        if draw(st.booleans()):
            i, j = rng.choice(num_tasks, size=2, replace=False)
            jac[i] = jac[j]
        if draw(st.booleans()):
            jac[rng.integers(num_tasks)] = 0.0
    return jac * draw(st.sampled_from(SCALES))


def gram(jac: np.ndarray) -> torch.Tensor:
    j = torch.as_tensor(jac, dtype=torch.float64)
    return j @ j.T


def weights_of(name_or_method, jac_or_gram, losses=None, **hparams) -> np.ndarray:
    """The method's weights for a Jacobian (``T×d`` array) or a Gramian (``T×T`` tensor)."""
    k = jac_or_gram if isinstance(jac_or_gram, torch.Tensor) else gram(jac_or_gram)
    num_tasks = k.shape[0]
    method = name_or_method
    if isinstance(method, str):
        method = M.create(method, tasks=[f"t{i}" for i in range(num_tasks)], **hparams)
    if losses is None:
        losses = torch.ones(num_tasks, dtype=torch.float64)
    out = shared_weights(method.weights(k, torch.as_tensor(losses, dtype=torch.float64)))
    assert out.shape == (num_tasks,)
    return out.detach().to(torch.float64).numpy()


def unit_gramian(jac: np.ndarray) -> np.ndarray:
    """``K`` scaled to unit largest diagonal (scale-free tolerances)."""
    k = jac @ jac.T
    top = np.max(np.diag(k))
    return k / top if top > 0 else k


def max_row_norm(jac: np.ndarray) -> float:
    return float(np.max(np.linalg.norm(jac, axis=1)))


@st.composite
def torch_jacobians(draw, min_tasks: int = 1, max_tasks: int = 4, max_cols: int = 12, segmented: bool = False):
    """A float64 ``T×d`` torch Jacobian at scale 1e-8, 1 or 1e8, possibly with a zero row or a
    duplicated task; with ``segmented``, also the sizes of two parameter tensors splitting ``d``."""
    tasks = draw(st.integers(min_tasks, max_tasks))
    cols = draw(st.integers(1, max_cols))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-8, 1.0, 1e8]))
    jac = torch.randn(tasks, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    kind = draw(st.sampled_from(["plain", "zero_row", "duplicate"]))
    if kind == "zero_row":
        jac[draw(st.integers(0, tasks - 1))] = 0.0
    elif kind == "duplicate" and tasks > 1:
        jac[1] = jac[0]
    if not segmented:
        return jac
    split = draw(st.integers(1, cols))
    return jac, ([split, cols - split] if split < cols else [cols])


def task_names(n: int) -> list[str]:
    return [f"t{i}" for i in range(n)]


def assert_log_loss_weights_equivariant(make, tasks: int, seed: int, scale: float, epochs: int = 2) -> tuple:
    """Feed two instances of an epoch-level log-loss method (``make(names)``) the same random
    losses, the second in reversed task order, for ``epochs`` epochs of 2 steps: the weights must
    be finite, sum to T and be permuted alike. Returns both instances."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.arange(tasks - 1, -1, -1)
    a, b = make(task_names(tasks)), make(task_names(tasks))
    for _ in range(epochs):
        for _ in range(2):
            losses = (torch.rand(tasks, generator=gen, dtype=torch.float64) + 1e-3) * scale
            w = a.weights(torch.log(losses))
            assert torch.isfinite(w).all() and abs(w.sum().item() - tasks) < 1e-9
            torch.testing.assert_close(b.weights(torch.log(losses[perm])), w[perm])
        a.end_epoch()
        b.end_epoch()
    return a, b
