"""What one call of :func:`repmtl.backward` did."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class BackwardRecord:
    """What one call did. Tensors are detached and stay on their device (no host sync).

    ``losses``: raw task losses. ``weights``: the ``α`` of the shared update (``None`` for an
    aggregator). ``head_weights``: the weights the heads received. ``penalties``: regularizer
    values by name (before their λ). ``gramian``: ``K`` when the method needed it (reused by
    diagnostics). ``saliency``: ``S`` if ``keep_saliency``. ``multi_input``: each task had its
    own ``Z_t``. ``penalty_scale``: with ``measure_penalties``, for each penalty ``name`` the
    norm of the gradient it applied relative to the task gradient's, at the encoder
    (``"{name}/encoder"``, measured at ``Z``) and at the heads (``"{name}/heads"``).
    """

    tasks: tuple[str, ...]
    losses: torch.Tensor
    weights: torch.Tensor | None
    head_weights: torch.Tensor
    level: str
    penalties: dict[str, torch.Tensor] = field(default_factory=dict)
    gramian: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    info: dict[str, object] = field(default_factory=dict)
    multi_input: bool = False
    penalty_scale: dict[str, torch.Tensor] = field(default_factory=dict)
