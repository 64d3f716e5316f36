"""Diagnostics computed during training, from what :func:`repmtl.backward` returns.

``step_diagnostics(record)`` is what the trainer calls every ``N`` steps (with
``keep_saliency=True`` passed to ``backward`` on those steps); ``layer_alphas(model)`` once per
epoch. Keys (built from the run-log schema :mod:`repmtl.logkeys`, which
:mod:`repmtl.experiments.report` reads them with):

===========================  =================================================================
``diag/level``               ``"parameters"`` or ``"representation"``: the level of ``K`` below
                             (a ``str``, the only non-tensor value)
``diag/gds``, ``diag/gms``   gradient direction / magnitude similarity (Mao et al., IEEE Access
                             2024, Eqs. 5–6)
``diag/cond``                condition number ``κ(J) = sqrt(λ_max/λ_min)`` of ``K`` (``inf``
                             when singular)
``diag/norm/<task>``         ``‖g_t‖ = sqrt(K_tt)``
``diag/cos/<task>``          cosine of ``g_t`` to the applied update ``Jᵀα`` (only when the
                             method returned weights ``α``)
``diag/fd``                  Feature Disentanglement of the saliencies (needs ``saliency``)
``diag/fd_attention``        top-down Feature Disentanglement of the attention maps ``A_t(Z)``
                             (when ``attention`` is given: models with attention-augmented heads,
                             :mod:`repmtl.nets.attention`; single-input data only)
``weight/<task>``            the weights ``α`` (same key and value as the trainer's step log)
===========================  =================================================================

Which ``K``: with ``level="auto"`` (default) the method's own Gramian ``record.gramian`` is
reused when it computed one (at ``record.level``; for ``scope="last_layer"`` methods such as
AvgNorm it covers the last shared layer only), otherwise the representation-level Gramian
``S Sᵀ`` is built from ``record.saliency`` (``S`` batch-flattened). ``level="representation"``
always uses the saliency: then every method of a sweep is measured the same way, which is what
cross-method comparisons (ranking similarity) need. For multi-input data (each task has its own
``Z_t``) saliencies of different tasks live in different spaces, so with ``multi_input=True``
no representation-level ``K`` is built (FD is still computed, pairing positions as
``docs/formulas.md#rep-mtl-multi-input-pairing`` pairs samples).

All values but ``diag/level`` are 0-dim tensors on the record's device: nothing here
synchronises with the host (``condition_number`` avoids ``eigvalsh`` for that reason).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from repmtl import logkeys as K
from repmtl.diagnostics.disentanglement import feature_disentanglement
from repmtl.diagnostics.geometry import (
    condition_number,
    cosine_to_update,
    gds,
    gms,
    gradient_norms,
)
from repmtl.diagnostics.powerlaw import ConvMode, model_alphas
from repmtl.step import BackwardRecord

__all__ = ["layer_alphas", "step_diagnostics"]

GramianLevel = Literal["auto", "representation"]


def step_diagnostics(
    record: BackwardRecord,
    *,
    level: GramianLevel = "auto",
    multi_input: bool | None = None,
    attention: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor | str]:
    """Cheap per-step measures from a :class:`~repmtl.backward.BackwardRecord` (module doc).

    ``multi_input``: whether each task had its own representation ``Z_t``; ``None`` reads
    ``record.multi_input`` when the record carries it, else assumes single-input data.
    ``attention``: task -> ``A_t(Z)`` of the step's forward pass
    (:func:`repmtl.nets.attention.attention_maps`), for the top-down FD (Mao et al., IEEE Access
    2024, Eq. 8 with Eqs. 9–10); ignored for multi-input data, whose maps cover different inputs.

    Raises ``ValueError`` when ``level="representation"`` is asked for but the record holds no
    saliency (pass ``keep_saliency=True`` to ``repmtl.backward`` on diagnostic steps).
    """
    if level not in ("auto", "representation"):
        raise ValueError(f"level must be 'auto' or 'representation', got {level!r}")
    if multi_input is None:
        multi_input = bool(getattr(record, "multi_input", False))
    tasks = record.tasks
    out: dict[str, torch.Tensor | str] = {}
    gram: torch.Tensor | None = None
    if level == "auto" and record.gramian is not None:
        gram, gram_level = record.gramian.detach(), record.level
    elif record.saliency is not None and not multi_input:
        flat = record.saliency.detach().reshape(len(tasks), -1)
        gram, gram_level = flat @ flat.T, "representation"
    elif level == "representation":
        raise ValueError(
            "representation-level diagnostics need the saliency: call repmtl.backward(..., keep_saliency=True)"
            + (" (and they are undefined for multi-input data)" if multi_input else "")
        )
    if gram is not None:
        out[K.DIAG_LEVEL.key()] = gram_level
        out[K.DIAG_GDS.key()] = gds(gram)
        out[K.DIAG_GMS.key()] = gms(gram)
        out[K.DIAG_COND.key()] = condition_number(gram)
        norms = gradient_norms(gram)
        out.update({K.DIAG_NORM.key(t): norms[i] for i, t in enumerate(tasks)})
        if record.weights is not None:
            cos = cosine_to_update(gram, record.weights)
            out.update({K.DIAG_COS.key(t): cos[i] for i, t in enumerate(tasks)})
    if record.saliency is not None:
        out[K.DIAG_FD.key()] = feature_disentanglement(record.saliency)
    if attention and not multi_input:
        missing = sorted(set(tasks) - set(attention))
        if missing:
            raise ValueError(f"attention maps given for {sorted(attention)} but not for tasks {missing}")
        out[K.DIAG_FD_ATTENTION.key()] = feature_disentanglement([attention[t] for t in tasks])
    if record.weights is not None:
        out.update({K.WEIGHT.key(t): record.weights[i] for i, t in enumerate(tasks)})
    return out


def layer_alphas(model: nn.Module, *, conv: ConvMode = "slices", min_evals: int = 10) -> dict[str, float]:
    """Power-law ``α`` per layer for per-epoch logging (``docs/formulas.md#rep-mtl-power-law-exponent``;
    keys:
    ``alpha/encoder/<layer>``, ``alpha/head/<task>/<layer>``, ``alpha/encoder_mean``,
    ``alpha/head_mean/<task>`` (a mean is absent when none of its layers has ``min_evals``
    non-zero eigenvalues). Host floats: one SVD per layer, meant for once per epoch."""
    fits = model_alphas(model, conv=conv, min_evals=min_evals)
    out = {K.ALPHA_ENCODER.key(name): a for name, a in fits.encoder.items()}
    for task, layers in fits.heads.items():
        out.update({K.ALPHA_HEAD.key(task, name): a for name, a in layers.items()})
    if fits.encoder_mean is not None:
        out[K.ALPHA_ENCODER_MEAN.key()] = fits.encoder_mean
    out.update({K.ALPHA_HEAD_MEAN.key(t): m for t, m in fits.head_means.items() if m is not None})
    return out
