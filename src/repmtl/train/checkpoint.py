"""Atomic checkpoints and the random-number-generator states a resumed run needs."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``:
    a crash leaves either the old or the new checkpoint, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    # weights_only=False: checkpoints hold RNG states and method extra state (python objects);
    # they are files this library wrote, not untrusted input.
    return torch.load(path, map_location=device, weights_only=False)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def assert_finite_parameters(module: torch.nn.Module) -> None:
    """Refuse to checkpoint non-finite weights (one host sync)."""
    params = [p for p in module.parameters()]
    if not params:
        return
    finite = torch.stack([torch.isfinite(p).all() for p in params])
    if not bool(finite.all()):
        names = [n for (n, _), ok in zip(module.named_parameters(), finite.tolist()) if not ok]
        raise FloatingPointError(f"non-finite values in parameters {names}; refusing to write them")
