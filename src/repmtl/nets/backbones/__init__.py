"""External backbones as encoders: any ``timm`` model and CLIP image towers, from local weights.

An ``--encoder`` value ``timm:<model>`` (``timm.list_models()``: ResNets, HRNets, ConvNeXts, ViTs,
DINOv2 ``timm:vit_small_patch14_dinov2``, SAM ``timm:samvit_base_patch16``, …) or
``clip:<model>`` (``open_clip.list_models()``, e.g. ``clip:ViT-B-32``) selects one; the libraries
are the optional extras ``[timm]`` and ``[clip]``. Models are always created with random weights
(no hub call, ever); ``--pretrained FILE`` loads a local state dict (``weights.py``).

- ``base.py``: the spec, :class:`DenseBackbone` (``B×C×H/s×W/s``: the model's last feature map
  resampled to the benchmark's output stride ``s`` by the dense neck) and :class:`PooledBackbone`
  (``B×F``), the missing-extra error;
- ``timm_models.py``, ``clip_models.py``: how each library's model is created and read;
- ``weights.py``: reading a local weights file safely, loading it with every key checked.

``docs/backbones.md`` says what each model family's ``Z`` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from repmtl.nets.backbones.base import (
    DenseBackbone,
    EncoderSpec,
    PooledBackbone,
    is_external,
    parse_spec,
)
from repmtl.nets.backbones.clip_models import check_clip_model, clip_dense, clip_pooled
from repmtl.nets.backbones.timm_models import check_timm_model, timm_dense, timm_pooled

__all__ = [
    "DenseBackbone",
    "EncoderSpec",
    "PooledBackbone",
    "build_dense_encoder",
    "build_pooled_encoder",
    "check_encoder",
    "is_external",
    "parse_spec",
]


def build_dense_encoder(
    encoder: str,
    pretrained: str | Path | None = None,
    output_stride: int = 8,
    model_args: Mapping[str, object] | None = None,
) -> DenseBackbone:
    """A dense external encoder from its spec (``timm:…`` / ``clip:…``) and optional local weights;
    ``model_args`` go to ``timm.create_model`` (timm only; e.g. ``{"output_stride": 8}``)."""
    spec = parse_spec(encoder)
    if spec.library == "timm":
        return timm_dense(spec.model, pretrained, output_stride, model_args)
    _no_model_args(encoder, model_args)
    return clip_dense(spec.model, pretrained, output_stride)


def build_pooled_encoder(
    encoder: str, pretrained: str | Path | None = None, model_args: Mapping[str, object] | None = None
) -> PooledBackbone:
    """A pooled external encoder from its spec and optional local weights."""
    spec = parse_spec(encoder)
    if spec.library == "timm":
        return timm_pooled(spec.model, pretrained, model_args)
    _no_model_args(encoder, model_args)
    return clip_pooled(spec.model, pretrained)


def _no_model_args(encoder: str, model_args: Mapping[str, object] | None) -> None:
    if model_args:
        raise ValueError(f"encoder {encoder}: model arguments {sorted(model_args)} apply to timm models only")


def check_encoder(encoder: str) -> None:
    """Refuse, before a run starts, a spec whose library is missing or does not know its model."""
    spec = parse_spec(encoder)
    if spec.library == "timm":
        check_timm_model(spec.model)
    else:
        check_clip_model(spec.model)
