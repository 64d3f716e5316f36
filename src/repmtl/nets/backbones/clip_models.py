"""``clip:<model>`` encoders: the image tower of an ``open_clip`` CLIP model, local weights only.

The model is built from open_clip's built-in configuration (``open_clip.list_models()``) with
``pretrained=None`` and no tower weights (``pretrained_image=False, pretrained_text=False``): no
hub is called. Names with a schema (``hf-hub:…``, ``local-dir:…``) are refused. Its image tower
(``model.visual``) is the encoder; the text tower is discarded.

The CLIP image towers have a fixed input size (``visual.image_size``, 224 for most): the encoder
resizes its input to it (bilinear) before the tower. Dense ``Z``: the tower's
``forward_intermediates`` last map (ViT: the last block's patch tokens after ``ln_post``, class
token dropped, reshaped to the patch grid; ModifiedResNet: its last stage), then the dense neck
of :class:`~repmtl.nets.backbones.base.DenseBackbone` resamples it to the benchmark's stride.
Pooled ``Z``: the image embedding (after the projection).

Weights: an open_clip checkpoint of the whole CLIP model (``visual.*`` keys are taken; what
``open_clip`` saves as ``open_clip_pytorch_model.bin`` / ``.safetensors``) or a state dict of the
image tower alone.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from repmtl.nets.backbones.base import DenseBackbone, PooledBackbone, missing_extra
from repmtl.nets.backbones.weights import load_checked, read_state_dict, require_file


def _open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise missing_extra("clip", exc) from exc
    return open_clip


def check_clip_model(name: str) -> None:
    """A ``ValueError`` unless open_clip (installed, else ``ImportError`` naming the extra) has ``name``."""
    open_clip = _open_clip()
    if ":" in name or name not in open_clip.list_models():
        raise ValueError(
            f"open_clip has no built-in model {name!r} (hub or directory names are not accepted: weights come "
            f"from --pretrained FILE); models: {open_clip.list_models()[:12]}…"
        )


def create_clip_visual(name: str, pretrained: str | Path | None = None) -> nn.Module:
    """The randomly initialised image tower of open_clip's ``name``, local weights loaded."""
    open_clip = _open_clip()
    check_clip_model(name)
    what = f"an open_clip {name} checkpoint (the CLIP model's or its image tower's state dict)"
    path = require_file(pretrained, what) if pretrained is not None else None
    model = open_clip.create_model(
        name, pretrained=None, load_weights=False, pretrained_image=False, pretrained_text=False
    )
    visual = model.visual
    if path is not None:
        state = read_state_dict(path, what)
        if any(k.startswith("visual.") for k in state):
            state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
        load_checked(visual, state, path)
    return visual


def _resized(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    size = tuple(visual.image_size) if isinstance(visual.image_size, (tuple, list)) else (visual.image_size,) * 2
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _last_map(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    kwargs = {"indices": 1, "intermediates_only": True}
    if "normalize_intermediates" in inspect.signature(visual.forward_intermediates).parameters:
        kwargs["normalize_intermediates"] = True  # the ViT towers: tokens after ln_post
    return visual.forward_intermediates(_resized(visual, x), **kwargs)["image_intermediates"][-1]


def _pooled(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return visual(_resized(visual, x))


def clip_dense(name: str, pretrained: str | Path | None = None, output_stride: int = 8) -> DenseBackbone:
    """A :class:`DenseBackbone` over the image tower of open_clip's ``name``."""
    visual = create_clip_visual(name, pretrained)
    if not hasattr(visual, "prune_intermediate_layers"):
        raise ValueError(
            f"encoder clip:{name}: its image tower ({type(visual).__name__}) cannot drop its pooling layers, which "
            "would stay in the encoder without a gradient; use a CLIP ViT (e.g. clip:ViT-B-32) or timm:resnet50 "
            "for dense tasks (pooled use, e.g. Office, works)"
        )
    visual.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)
    return DenseBackbone(f"clip:{name}", visual, _last_map, output_stride)


def clip_pooled(name: str, pretrained: str | Path | None = None) -> PooledBackbone:
    """A :class:`PooledBackbone`: the image embedding of open_clip's ``name``."""
    return PooledBackbone(f"clip:{name}", create_clip_visual(name, pretrained), _pooled)
