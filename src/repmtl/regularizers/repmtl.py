"""Rep-MTL: Task-specific Saliency Regulation (TSR) and Cross-task Saliency Alignment (CSA).

Wang, Li, Xu, "Rep-MTL: Unleashing the Power of Representation-level Task Saliency for
Multi-Task Learning", ICCV 2025 (arXiv 2507.21049). Formulas and the decisions on what the paper
leaves open: ``docs/formulas.md#rep-mtl``. The saliencies are ``S_t = ∂L_t/∂Z`` stacked
``T×B×C×H×W`` (``T×B×C`` for vector features, i.e. ``H = W = 1``), computed by
:func:`repmtl.backward` with the graph kept; with a loss transform (``log``, on in the Rep-MTL
preset) they are the saliencies of the transformed task terms, i.e. of the objective's own task
terms.

**TSR** (``#rep-mtl-tsr``). ``Ŝ_t = mean_c S_t`` (signed, ``B×H×W``); at every position ``i``,
``P_{i,t} = (|Ŝ_{i,t}| + εm) / (Σ_k |Ŝ_{i,k}| + Tεm)`` and ``L_tsr = mean_i −Σ_t P log P``.
*Decision (eps)*: ``ε`` is relative to ``m = max |Ŝ|`` of the batch (a constant of the step),
so ``P`` is a proper distribution, ``L_tsr`` is invariant to the global scale of the
saliencies (tiny gradients are not flattened by an absolute ε), and an all-zero saliency gives
the uniform distribution (``L_tsr = log T``), never NaN. One task: ``L_tsr = 0``.

**CSA** (Eqs. 7 and 9; ``#rep-mtl-csa``). Per sample ``b``: task affinities
``M_t[b] = S_t[b] S_t[b]ᵀ`` (``C×C``,
``S_t[b]`` as ``C×HW``), anchor ``Â_b = A_b A_bᵀ`` with ``A_b`` the ``C×T`` matrix of
spatially averaged saliencies; cosine similarities of the vectorised matrices; positives
``(Â_b, M_t[b])``, negatives ``(Â_b, Â_k)``, ``k ≠ b``;
``L_csa = mean_{b,t} −log(exp(sim(Â_b, M_t[b])/τ) / D_b)`` with the printed denominator
``D_b = Σ_{k≠b} exp(sim(Â_b, Â_k)/τ)`` (default) or the standard InfoNCE one that also holds
the positive (``include_positive=True``). ``τ = 2`` (*Decision*: the paper gives none; chosen
on validation, ``docs/rep-mtl.md``, "Study").
No ``C×C`` matrix of a task affinity is ever formed unless ``C ≤ HW``: the Frobenius identities
``⟨SSᵀ, AAᵀ⟩ = ‖AᵀS‖²``, ``‖SSᵀ‖ = ‖SᵀS‖`` (the smaller of ``C×C`` and ``HW×HW``) and
``⟨A_bA_bᵀ, A_kA_kᵀ⟩ = ‖A_bᵀA_k‖²`` (``T×T``) give every similarity, so memory grows with
``B·T·C·HW``, not ``B·T·C²``. *Decisions (degenerate inputs)*: a zero matrix has cosine 0 with
anything; with a batch of 1 there are no negatives and the empty denominator's log is taken as
0, leaving ``−sim/τ`` (printed form) or 0 (InfoNCE form). CSA is invariant to scaling all of a
sample's saliencies by one factor, so each sample is divided by its largest ``|S|`` (a
constant) before the products, for float32 range; the value and gradient are unchanged.

**Multi-input data** (``#rep-mtl-multi-input-pairing``, *Decision*): sample ``b`` of every
task's batch is paired by position, and both terms work on the spatially pooled ``C``-vector
(``H = W = 1``), because positions of different images do not correspond.
"""

from __future__ import annotations

import torch

from repmtl.hparams import NonNegative, Positive
from repmtl.regularizers.base import (
    GradientFlow,
    Penalty,
    Regularizer,
    register_regularizer,
)

_TINY = 1e-30


def _as_tbcn(saliency: torch.Tensor) -> torch.Tensor:
    if saliency.ndim < 3:
        raise ValueError(
            f"saliency must be stacked T×B×C(×H×W), got shape {tuple(saliency.shape)}"
        )
    num_tasks, batch, channels = saliency.shape[:3]
    return saliency.reshape(num_tasks, batch, channels, -1)


def tsr_loss(saliency: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Task-specific Saliency Regulation: mean entropy of the per-position distribution of
    channel-averaged saliency magnitude over tasks (``docs/formulas.md#rep-mtl-tsr``; eps rule in
    the module doc)."""
    s = _as_tbcn(saliency)
    num_tasks = s.shape[0]
    magnitude = s.mean(dim=2).abs()  # T×B×N
    largest = magnitude.detach().amax()
    floor = eps * torch.where(largest > 0, largest, torch.ones_like(largest))
    p = (magnitude + floor) / (magnitude.sum(dim=0, keepdim=True) + num_tasks * floor)
    return -(p * p.log()).sum(dim=0).mean()


class _SymmetricGram(torch.autograd.Function):
    """``P Pᵀ`` whose backward is one product, ``(G + Gᵀ) P``, where autograd's ``P @ P.T``
    takes two (one per operand). Its backward is made of differentiable operations (double
    backward works), it runs under ``torch.func`` transforms, and a gradient of another dtype
    (a forward under autocast, the backward outside it) is cast to the rows'."""

    generate_vmap_rule = True

    @staticmethod
    def forward(rows: torch.Tensor) -> torch.Tensor:
        return rows @ rows.T

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (rows,) = ctx.saved_tensors
        return (grad + grad.T).to(rows.dtype) @ rows


def _affinity_norms(s: torch.Tensor) -> torch.Tensor:
    """``‖M_t[b]‖_F = ‖S_t[b] S_t[b]ᵀ‖_F`` (``B×T``) from the smaller of the ``C×C`` and ``HW×HW``
    Gram matrices; for vector features (one position) it is ``‖S_t[b]‖²``, with no product at all."""
    channels, positions = s.shape[2:]
    if min(channels, positions) == 1:
        return s.square().sum(dim=(2, 3)).T
    small = s @ s.transpose(2, 3) if channels <= positions else s.transpose(2, 3) @ s
    return small.square().sum(dim=(2, 3)).clamp_min(_TINY).sqrt().T


def csa_loss(
    saliency: torch.Tensor, tau: float = 2.0, include_positive: bool = False, eps: float = 1e-8
) -> torch.Tensor:
    """Cross-task Saliency Alignment: contrast each sample's cross-task anchor with its task
    affinities (positives) and other samples' anchors (negatives), via Gram identities (Eq. 9;
    ``docs/formulas.md#rep-mtl-csa``; degenerate-input rules in the module doc). ``eps`` bounds
    cosine denominators."""
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    s = _as_tbcn(saliency)
    num_tasks, batch, channels = s.shape[:3]
    scale = s.detach().abs().amax(dim=(0, 2, 3), keepdim=True)
    s = s / torch.where(scale > 0, scale, torch.ones_like(scale))
    anchor = s.mean(dim=3)  # T×B×C: column t of A_b is anchor[t, b]

    # ⟨Â_b, M_t[b]⟩ = ‖A_bᵀ S_t[b]‖²
    projection = torch.einsum("kbc,tbcn->btkn", anchor, s)
    inner_positive = projection.square().sum(dim=(2, 3))  # B×T
    affinity_norm = _affinity_norms(s)  # B×T
    # ⟨Â_b, Â_k⟩ = ‖A_bᵀ A_k‖²: the (b, t), (k, u) entries of one Gram matrix of the B·T anchors
    rows = anchor.transpose(0, 1).reshape(batch * num_tasks, channels)
    inner_anchor = _SymmetricGram.apply(rows).view(batch, num_tasks, batch, num_tasks).square().sum(dim=(1, 3))
    anchor_norm = torch.diagonal(inner_anchor).clamp_min(_TINY).sqrt()  # B

    positive = inner_positive / (anchor_norm[:, None] * affinity_norm).clamp_min(eps)
    negative = inner_anchor / (anchor_norm[:, None] * anchor_norm[None, :]).clamp_min(eps)
    positive_logits = positive / tau  # B×T
    if batch == 1:
        log_denominator = positive_logits if include_positive else torch.zeros_like(positive_logits)
    else:
        off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=s.device)
        negative_logits = (negative / tau).masked_fill(~off_diagonal, float("-inf"))  # B×B
        if include_positive:
            candidates = torch.cat(
                [positive_logits[:, :, None], negative_logits[:, None, :].expand(batch, num_tasks, batch)], dim=2
            )
            log_denominator = torch.logsumexp(candidates, dim=2)
        else:
            log_denominator = torch.logsumexp(negative_logits, dim=1, keepdim=True)
    return (log_denominator - positive_logits).mean()


@register_regularizer
class RepMTL(Regularizer):
    """Rep-MTL's penalties ``λ_tsr L_tsr + λ_csa L_csa`` on the task saliencies.

    Defaults (*Decisions*, ``docs/formulas.md#rep-mtl-objective``): ``λ_tsr = λ_csa = 0.9`` (the
    middle of the paper's grid {0.7, 0.9, 1.1, 1.3, 1.5}); ``τ = 2`` (the paper gives none); the
    printed CSA denominator.
    ``tsr=False`` / ``csa=False`` are the paper's ablations (CSA only / TSR only).

    ``gradient_flow`` (*Decision*, ``docs/rep-mtl.md``, "Gradient flow" and "Study"):
    ``"representation"`` (default) sends the penalties' gradient to the encoder only (the
    encoder's incoming gradient is ``Σ_t w_t S_t + ∂(penalties)/∂Z``; heads get their task
    gradients); ``"exact"`` is the gradient of the printed objective, reaching the heads (through
    ``S``) and the encoder (through ``Z``); ``"heads"`` sends it to the heads only. The defaults
    (``τ = 2``, ``"representation"``) were chosen on validation Δp_task; ``gradient_flow="exact",
    tau=0.1`` is the literal objective at the previous defaults.
    """

    name = "repmtl"

    def __init__(
        self,
        lambda_tsr: NonNegative = 0.9,
        lambda_csa: NonNegative = 0.9,
        tau: Positive = 2.0,
        tsr: bool = True,
        csa: bool = True,
        include_positive: bool = False,
        eps: Positive = 1e-8,
        gradient_flow: GradientFlow = "representation",
    ) -> None:
        super().__init__()
        self.gradient_flow = gradient_flow
        self.lambda_tsr, self.lambda_csa, self.tau = float(lambda_tsr), float(lambda_csa), float(tau)
        self.use_tsr, self.use_csa = bool(tsr), bool(csa)
        self.include_positive, self.eps = bool(include_positive), float(eps)

    @property
    def needs_saliency(self) -> bool:  # type: ignore[override]
        return self.use_tsr or self.use_csa

    def forward(self, saliency: torch.Tensor, losses: torch.Tensor, *, multi_input: bool = False) -> list[Penalty]:
        if multi_input:
            s = _as_tbcn(saliency).mean(dim=3)  # pooled C-vectors (H = W = 1)
        else:
            s = saliency
        penalties = []
        if self.use_tsr:
            penalties.append(Penalty("tsr", tsr_loss(s, self.eps), self.lambda_tsr, self.gradient_flow))
        if self.use_csa:
            csa = csa_loss(s, self.tau, self.include_positive, self.eps)
            penalties.append(Penalty("csa", csa, self.lambda_csa, self.gradient_flow))
        return penalties

    def extra_repr(self) -> str:
        return (f"lambda_tsr={self.lambda_tsr}, lambda_csa={self.lambda_csa}, tau={self.tau}, "
                f"tsr={self.use_tsr}, csa={self.use_csa}, include_positive={self.include_positive}, "
                f"gradient_flow={self.gradient_flow!r}")
