"""CosReg: penalise the pairwise squared cosine similarity of task gradients.

Suteu & Guo, "Regularizing Deep Multi-Task Networks using Orthogonal Gradients", arXiv 1912.06844
(2019), as summarised by Mao et al. (IEEE Access 2024, §II-C, Eq. 4): "added pairwise squared
cosine similarity as the regularization term to encourage orthogonal columns in G":

    L_cos = Σ_{i<j} cos²(g_i, g_j),       objective  Σ_t w_t L_t + λ L_cos

**Level (decision).** The paper takes ``g_t`` w.r.t. the shared parameters. A regularizer here
receives the task saliencies ``S_t = ∂L_t/∂Z`` computed with the graph kept (see
``regularizers/base.py``), so CosReg is formed from the batch-flattened representation-level
gradients ``S_t`` — Mao et al.'s "(rep) CosReg", which it reports within a few percent of the
parameter-level one (Table 13) and among the methods with a consistent gain on MetaGraspNet.
The parameter-level form would need the ``T`` shared-parameter gradients with their graph (a
double backward through the whole encoder per task), which the protocol does not provide. The
penalty differentiates w.r.t. the heads and, through ``Z``, the encoder.

Options: ``reduction="sum"`` over the ``T(T−1)/2`` pairs (default, the printed form) or
``"mean"``; ``per_sample=True`` averages the pairwise cosines of each sample's saliency instead
of using the whole batch as one vector. A zero gradient has cosine 0 with everything (no NaN,
also in the gradient of the penalty). The default weight ``λ = 1`` is a **decision**: no paper
gives one (``docs/formulas.md#methods-cosreg``).

For multi-input data (each task its own batch, ``S_t = ∂L_t/∂Z_t``) the stacked saliencies are
compared entry by entry, i.e. sample ``b`` of every task's batch is paired by position, as the
regularizer protocol specifies; this is weaker than the parameter-level original, where all
tasks' gradients live in the same parameter space whatever the inputs.

The cosine is formed in float64 from the ``T×T`` Gramian of the saliencies, so it stays exact
for gradients of scale 1e-8 in float32.
"""

from __future__ import annotations

from typing import Literal

import torch

from repmtl.hparams import NonNegative
from repmtl.regularizers.base import Penalty, Regularizer, register_regularizer


@register_regularizer
class CosReg(Regularizer):
    name = "cosreg"
    needs_saliency = True

    def __init__(
        self, weight: NonNegative = 1.0, reduction: Literal["sum", "mean"] = "sum", per_sample: bool = False
    ) -> None:
        super().__init__()
        self.weight = float(weight)
        self.reduction = reduction
        self.per_sample = per_sample

    def forward(self, saliency: torch.Tensor, losses: torch.Tensor, *, multi_input: bool = False) -> list[Penalty]:
        """``multi_input``: the saliencies of different tasks come from different batches and are
        compared position by position (the protocol's pairing); the penalty is formed the same way."""
        if saliency is None:
            raise ValueError("CosReg needs the task saliencies (pass representation=Z to repmtl.backward)")
        tasks = saliency.shape[0]
        if tasks < 2:
            # No pair: a zero that still belongs to the graph, so the backward treats it uniformly.
            return [Penalty(self.name, saliency.sum() * 0.0, self.weight)]
        if self.per_sample:
            flat = saliency.reshape(tasks, saliency.shape[1], -1).transpose(0, 1)  # B × T × m
            value = pairwise_squared_cosine(flat, self.reduction).mean()
        else:
            value = pairwise_squared_cosine(saliency.reshape(1, tasks, -1), self.reduction)[0]
        return [Penalty(self.name, value.to(saliency.dtype), self.weight)]


def pairwise_squared_cosine(rows: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """For ``rows`` of shape ``(N, T, m)``: per ``n`` the sum (or mean) over ``i < j`` of
    ``cos²(rows[n, i], rows[n, j])``; pairs with a zero row count as 0."""
    gram = (rows @ rows.transpose(1, 2)).to(torch.float64)  # N × T × T
    diag = torch.diagonal(gram, dim1=1, dim2=2)
    denom = diag.unsqueeze(2) * diag.unsqueeze(1)
    valid = denom > 0
    safe = torch.where(valid, denom, torch.ones_like(denom))
    cos2 = torch.where(valid, gram.square() / safe, torch.zeros_like(denom))
    tasks = rows.shape[1]
    upper = torch.triu(torch.ones(tasks, tasks, dtype=torch.bool, device=rows.device), diagonal=1)
    total = cos2[:, upper].sum(1)
    return total if reduction == "sum" else total / upper.sum()
