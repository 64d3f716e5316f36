"""Feature Disentanglement (FD; Mao et al., IEEE Access 2024, Eqs. 9–10;
``docs/formulas.md#diagnostics-feature-disentanglement``).

For task maps ``M_i`` over the shared representation ``Z`` (bottom-up: the saliency
``∂L_i/∂Z``; top-down: the attention map ``A_i(Z)`` of an attention-augmented head, see
:mod:`repmtl.nets.attention`), at each position ``j``::

    p_ij = |M_ij| / Σ_k |M_kj|          (a distribution over the T tasks)
    S_j  = −Σ_i p_ij log p_ij            (its entropy, natural log, 0·log 0 = 0)
    FD   = mean_j S_j

FD lies in ``[0, log T]``; lower means each feature is salient to fewer tasks (more
disentangled). ``normalized=True`` divides by ``log T`` (``[0, 1]``, comparable across task
counts).

Decisions (documented rules):

* **Positions** are every entry of a task's map: batch, channel and spatial indices alike
  (``j`` runs over ``B·C·H·W`` entries; vector features ``B×C`` are ``B·C`` positions). The paper
  defines positions of ``Z``, which includes channels; averaging over the batch too makes FD the
  mean of the per-sample FDs. (Rep-MTL's TSR instead averages the signed saliency over channels
  first; that is a regulariser, not this diagnostic.)
* **Zero columns**: a position where every task's map is exactly zero (e.g. a dead ReLU feature
  no head reads) carries no information about how tasks share it: it is left out of the mean.
  If every position is zero, FD is ``0`` (no feature is shared by anything).
* **One task**: every ``p = 1``, so FD is ``0`` (``normalized=True`` also gives ``0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

__all__ = ["feature_disentanglement", "position_entropy"]

Maps = torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def _stack(maps: Maps) -> torch.Tensor:
    if isinstance(maps, torch.Tensor):
        stacked = maps
    else:
        items = list(maps.values()) if isinstance(maps, Mapping) else list(maps)
        if not items:
            raise ValueError("feature_disentanglement needs the maps of at least one task")
        shapes = {tuple(m.shape) for m in items}
        if len(shapes) != 1:
            raise ValueError(f"the task maps must share one shape, got {sorted(shapes)}")
        stacked = torch.stack(items)
    if stacked.ndim < 2 or stacked.shape[0] == 0 or stacked[0].numel() == 0:
        raise ValueError(
            f"maps must be stacked T×… with at least one task and one position, got shape {tuple(stacked.shape)}"
        )
    if not stacked.is_floating_point():
        stacked = stacked.to(torch.get_default_dtype())
    return stacked


def position_entropy(maps: Maps) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position entropy ``S_j`` (shape of one task's map) and the mask of positions where
    some task's map is non-zero (the positions FD averages over)."""
    m = _stack(maps).detach().abs()
    total = m.sum(0)
    valid = total > 0
    p = m / torch.where(valid, total, torch.ones_like(total))
    entropy = -torch.special.xlogy(p, p).sum(0)
    return entropy, valid


def feature_disentanglement(maps: Maps, *, normalized: bool = False) -> torch.Tensor:
    """FD of task maps stacked ``T×…`` (or a sequence / mapping of ``T`` equal-shaped maps).

    Returns a 0-dim tensor on the maps' device (no host sync). See the module doc for the
    position, zero-column and one-task rules. The maps are detached: FD is a diagnostic.
    """
    stacked = _stack(maps)
    entropy, valid = position_entropy(stacked)
    count = valid.sum().clamp_min(1)
    fd = torch.where(valid, entropy, torch.zeros_like(entropy)).sum() / count
    if normalized:
        t = stacked.shape[0]
        fd = fd / math.log(t) if t > 1 else torch.zeros_like(fd)
    return fd
