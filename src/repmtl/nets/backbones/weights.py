"""Reading an encoder's weights from a local file, safely, and loading them with every key checked.

Weights are never downloaded. A file is read with ``torch.load(..., weights_only=True)`` (no
pickled code runs) or, for ``.safetensors`` files (the format of most Hugging Face model cards),
with ``safetensors.torch.load_file``. A checkpoint may wrap its state dict in a ``state_dict`` or
``model`` entry; ``module.`` prefixes (DataParallel / DDP) are stripped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a ``Path`` when it is a file; else a ``FileNotFoundError`` naming it and ``what``
    (e.g. ``"a timm resnet18 state dict"``) belongs there."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {path} not found; weights are never downloaded: put {what} at "
            "that path (--pretrained FILE), or train from random initialisation (no --pretrained)"
        )
    return path


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The state dict (name -> tensor) held by a local weights file."""
    path = require_file(path, what)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import (
                load_file,  # a dependency of timm and open_clip
            )

            state: object = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot be read as a weights file ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor), the weights of {what}")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def load_checked(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: str | Path,
    ignore: Callable[[str], bool] = lambda key: False,
) -> None:
    """Load ``state`` into ``model``; every key of either side must match in name and shape, but
    for the keys ``ignore`` accepts (e.g. a classifier the encoder drops), which are skipped on both
    sides. A mismatch is a ``ValueError`` naming the file and the first offending keys."""
    state = {k: v for k, v in state.items() if not ignore(k)}
    own = {k: v for k, v in model.state_dict().items() if not ignore(k)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not match the encoder {type(model).__name__} "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} mis-shaped keys); "
            f"missing: {missing[:5]} unexpected: {unexpected[:5]} mis-shaped: {mismatched[:5]}. "
            "Are these the weights of another model or size?"
        )
    model.load_state_dict(state, strict=False)
