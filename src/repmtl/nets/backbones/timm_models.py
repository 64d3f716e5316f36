"""``timm:<model>`` encoders: any timm model, created with ``pretrained=False``, local weights only.

Dense ``Z``: ``model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)``,
timm's own "last feature map" API: for CNNs the last stage's output; for ViTs (DINOv2 included)
the last block's patch tokens after the final norm, prefix (class / register) tokens dropped and
reshaped to their ``H/p×W/p`` grid; for SAM (``samvit_*``) its convolutional neck's image
embedding (256 channels). Layers past that map and the classifier are pruned
(``prune_intermediate_layers``), so every parameter of the encoder reaches ``Z``.

ViTs and EVA models are created with ``dynamic_img_size=True, dynamic_img_pad=True``: their
position embeddings are resampled to the input's token grid and an input that is not a multiple of
the patch size is padded, so a 48×64 synthscenes image goes through a 224-pixel DINOv2. Other
constructor keywords can be passed as ``model_args`` (e.g. ``output_stride=8`` for a dilated timm
ResNet, which makes the dense neck an identity at stride 8).

Pooled ``Z``: the model's forward with ``num_classes=0`` (its global pooling, no classifier).

Weights: a state dict of the full timm model as timm names it (``torch.save(model.state_dict())``
or a ``.safetensors`` file of a Hugging Face timm model card); its classifier
(``pretrained_cfg["classifier"]``) is ignored, every other key must match.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from repmtl.nets.backbones.base import DenseBackbone, PooledBackbone, missing_extra
from repmtl.nets.backbones.weights import load_checked, read_state_dict, require_file

#: timm modules whose models take ``dynamic_img_size`` / ``dynamic_img_pad``
_DYNAMIC_SIZE_MODULES = ("vision_transformer", "vision_transformer_hybrid", "eva")


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise missing_extra("timm", exc) from exc
    return timm


def check_timm_model(name: str) -> None:
    """A ``ValueError`` unless timm (installed, else ``ImportError`` naming the extra) knows ``name``."""
    timm = _timm()
    if ":" in name or not timm.is_model(name):  # "hf-hub:…" names would be fetched from the hub
        hint = timm.list_models(f"*{name.split('_')[0]}*")[:8] if ":" not in name else []
        raise ValueError(
            f"timm {timm.__version__} has no model {name!r} (hub names are not accepted: weights come from "
            f"--pretrained FILE); similar names: {hint}; all: python -c \"import timm; print(timm.list_models())\""
        )


def create_timm_model(
    name: str, pretrained: str | Path | None = None, model_args: Mapping[str, object] | None = None
) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0, …)`` with local weights loaded."""
    timm = _timm()
    check_timm_model(name)
    what = f"a state dict of timm's {name} (torch.save(model.state_dict(), FILE) or a .safetensors file)"
    path = require_file(pretrained, what) if pretrained is not None else None  # before building
    kwargs: dict[str, object] = {"pretrained": False, "num_classes": 0}
    if timm.models.is_model_in_modules(name, _DYNAMIC_SIZE_MODULES):
        kwargs.update(dynamic_img_size=True, dynamic_img_pad=True)
    kwargs.update(model_args or {})
    model = timm.create_model(name, **kwargs)
    if path is not None:
        classifier = model.pretrained_cfg.get("classifier") or ()
        prefixes = tuple(f"{c}." for c in ((classifier,) if isinstance(classifier, str) else classifier))
        load_checked(model, read_state_dict(path, what), path, ignore=lambda key: key.startswith(prefixes))
    return model


def _last_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)[-1]


def _pooled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def timm_dense(
    name: str,
    pretrained: str | Path | None = None,
    output_stride: int = 8,
    model_args: Mapping[str, object] | None = None,
) -> DenseBackbone:
    """A :class:`DenseBackbone` over timm's ``name`` (see the module docstring)."""
    model = create_timm_model(name, pretrained, model_args)
    model.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)
    return DenseBackbone(f"timm:{name}", model, _last_map, output_stride)


def timm_pooled(
    name: str, pretrained: str | Path | None = None, model_args: Mapping[str, object] | None = None
) -> PooledBackbone:
    """A :class:`PooledBackbone` over timm's ``name`` (its pooled features, no classifier)."""
    return PooledBackbone(f"timm:{name}", create_timm_model(name, pretrained, model_args), _pooled)
