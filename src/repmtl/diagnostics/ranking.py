"""Ranking similarity (Mao et al., IEEE Access 2024, Eq. 11).

Formula and tie rules: ``docs/formulas.md#diagnostics-ranking-similarity``.

Two score sequences ``a`` and ``b`` over the same ``n`` items (e.g. the test metric of ``n``
methods, and their FD or GDS) rank the items; the ranking similarity is the fraction of pairs
``i ≠ j`` that the two order the same way::

    S = 1/(n(n−1)) Σ_{i≠j} 1[(a_i > a_j) == (b_i > b_j)]

Reversing one ranking maps ``S`` to ``1 − S``; as a ranking and its reverse carry the same
information (a measure may be "higher is worse"), the paper reports the symmetric
``|S − 0.5|`` (``0``: unrelated, ``0.5``: identical or exactly reversed orders).

Ties (**Decision**, switchable with ``ties=``):

* ``"half"`` (default): a pair tied in ``a`` or in ``b`` counts ``½``. Then
  ``S = (1 + τ_a)/2`` with Kendall's ``τ_a``, and ``S(a, −b) = 1 − S(a, b)`` holds exactly,
  so ``|S − 0.5|`` keeps its meaning.
* ``"literal"``: Eq. 11 as printed, over ordered pairs: a pair tied in exactly one sequence
  counts ``½`` (it agrees in one order, not the other), a pair tied in both counts ``1``. Breaks
  the reversal symmetry when both have ties.
* ``"drop"``: pairs tied in either sequence are left out.

With no usable pair (``n < 2``, or every pair dropped) ``S = 0.5`` (no evidence either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["RankingSimilarity", "ranking_similarity"]

Ties = Literal["half", "literal", "drop"]


@dataclass(frozen=True)
class RankingSimilarity:
    """``similarity``: ``S`` in ``[0, 1]``; ``symmetric``: ``|S − 0.5|`` in ``[0, 0.5]``;
    ``pairs``: the number of unordered pairs that entered ``S``."""

    similarity: float
    symmetric: float
    pairs: int


def _scores(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of scores, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite scores: {arr.tolist()}")
    return arr


def ranking_similarity(a: Sequence[float], b: Sequence[float], *, ties: Ties = "half") -> RankingSimilarity:
    """Ranking similarity of two score sequences over the same items (module doc)."""
    x, y = _scores(a, "a"), _scores(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must score the same items, got {x.size} and {y.size} scores")
    if ties not in ("half", "literal", "drop"):
        raise ValueError(f"ties must be 'half', 'literal' or 'drop', got {ties!r}")
    n = x.size
    iu = np.triu_indices(n, k=1)
    sa = np.sign(x[:, None] - x[None, :])[iu]
    sb = np.sign(y[:, None] - y[None, :])[iu]
    if ties == "half":
        credit, used = (1.0 + sa * sb) / 2.0, np.ones(sa.shape, dtype=bool)
    elif ties == "literal":
        # ordered pair (i, j) agrees iff [a_i > a_j] == [b_i > b_j]; sum both orders, halve
        credit = ((sa > 0) == (sb > 0)).astype(float) / 2.0 + ((sa < 0) == (sb < 0)).astype(float) / 2.0
        used = np.ones(sa.shape, dtype=bool)
    else:
        used = (sa != 0) & (sb != 0)
        credit = (sa * sb > 0).astype(float)
    pairs = int(used.sum())
    s = float(credit[used].mean()) if pairs else 0.5
    return RankingSimilarity(similarity=s, symmetric=abs(s - 0.5), pairs=pairs)
