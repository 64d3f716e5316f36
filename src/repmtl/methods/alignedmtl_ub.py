"""Aligned-MTL-UB: Aligned-MTL on the gradients of the shared representation.

Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023,
Sec. 4.3 ("Aligned-MTL-UB", the official ``AlignedMTLUBBalancer``): the balance matrix is
computed from the Gramian of ``∇_Z L_t`` and the aligned representation gradient is
back-propagated once through the encoder. It is
:class:`~repmtl.methods.alignedmtl.AlignedMTL` (same options) fixed to
``level="representation"``.
"""

from __future__ import annotations

from repmtl.methods.alignedmtl import AlignedMTL
from repmtl.methods.base import register


@register
class AlignedMTLUB(AlignedMTL):
    name = "alignedmtl-ub"
    levels = ("representation",)
    description = "Aligned-MTL on representation gradients dL_t/dZ (upper-bound form, one encoder backward)"
    reference = "Senushkin et al., CVPR 2023, Sec. 4.3 (Aligned-MTL-UB)"
