"""Atomic, safe checkpoints and the random-number-generator states a resumed run needs.

Checkpoints hold only tensors and plain containers (numbers, strings, lists, dicts), so they
load with ``torch.load(weights_only=True)``: opening one never runs code. Writes go to a
temporary file that is renamed over the target, so a crash leaves the old or the new file,
never a torn one; temporaries left by a killed writer are removed on the next start. The file
and then its folder are fsync'ed, so the rename itself survives a power loss. With
``keep_previous`` the replaced file stays as ``<name>.prev.pt`` (a hard link, no copy), and
:func:`load_newest` falls back on it when the newest file cannot be read.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or written (the message names the file and what to do)."""


def previous(path: Path) -> Path:
    """Where :func:`save_atomic` keeps the version it replaced: ``last.pt`` -> ``last.prev.pt``."""
    return Path(path).with_suffix(".prev" + Path(path).suffix)


def save_atomic(obj: Any, path: Path, keep_previous: bool = False) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``
    (first keeping the old ``path`` as :func:`previous` when ``keep_previous``). At every moment
    ``path`` is a complete checkpoint (old or new) once it has been written once."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous and path.exists():
            _keep(path, previous(path))
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        Path(tmp).unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise CheckpointError(
            f"cannot write checkpoint {path}: {reason}; the previous checkpoint is intact. "
            "Free disk space (or choose another --out) and resume"
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _keep(path: Path, kept: Path) -> None:
    """``kept`` becomes the current ``path`` (a hard link where the file system has them)."""
    link = kept.with_name(f".{kept.name}.link.tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
    except OSError:
        shutil.copyfile(path, link)
    os.replace(link, kept)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def load_newest(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, Any], Path, CheckpointError | None]:
    """``path``'s checkpoint, else its :func:`previous` one when ``path`` cannot be read (torn
    by a crash of the machine, truncated by a copy). Returns the state, the file it came from
    and the error that made it fall back (``None`` when ``path`` was good)."""
    try:
        return load(path, device), Path(path), None
    except CheckpointError as newest:
        older = previous(path)
        if not older.is_file():
            raise
        try:
            return load(older, device), older, newest
        except CheckpointError:
            raise newest from None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries an interrupted :func:`save_atomic` left in ``folder``."""
    stale = sorted(Path(folder).glob(".*.pt.*.tmp")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing anything it contains (``weights_only=True``)."""
    path = Path(path)
    advice = "delete it (or pass --overwrite) to start again, or restore a good copy"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted copy?); {advice}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values, or is not a "
            f"checkpoint; refusing to load it ({first[:160]}); {advice}"
        ) from exc
    # Damaged bytes fail inside torch.load's zip, storage and weights-only unpickling code as
    # almost any exception type (struct.error, IndexError, KeyError, TypeError, AssertionError,
    # ...): all of them mean the file is not a loadable checkpoint.
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({first[:160]}); {advice}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a repmtl state (got {type(state).__name__}); {advice}")
    return state


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values (loadable with ``weights_only``)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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
