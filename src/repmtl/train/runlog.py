"""Run logs: ``steps.jsonl`` (every ``log_every`` steps), ``epochs.jsonl`` + ``epochs.csv`` (every
epoch) and TensorBoard events under ``tb/``. Values may be tensors: they are moved to the host
together, once per logged line."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from repmtl import logkeys as K

#: the counters every line starts with (TensorBoard plots the other values against them)
_COUNTERS = (K.STEP.key(), K.EPOCH.key())


def to_floats(values: Mapping[str, Any]) -> dict[str, Any]:
    """Tensors -> floats with one host transfer; other values unchanged. A tensor of ``n > 1``
    elements becomes ``n`` entries ``key/0 … key/n-1`` (callers name per-task vectors first,
    see :func:`name_vectors`)."""
    tensors = {k: v.detach().reshape(-1) for k, v in values.items() if isinstance(v, torch.Tensor)}
    out = {k: v for k, v in values.items() if k not in tensors}
    if tensors:
        flat = torch.cat([t.to("cpu", torch.float64) for t in tensors.values()]).tolist()
        start = 0
        for key, tensor in tensors.items():
            n = tensor.numel()
            if n == 1:
                out[key] = flat[start]
            else:
                out.update({f"{key}/{i}": flat[start + i] for i in range(n)})
            start += n
    return out


def name_vectors(values: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Split every tensor with one entry per task into ``key/<task>`` entries (no host sync)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, torch.Tensor) and value.numel() == len(names) > 1:
            flat = value.detach().reshape(-1)
            out.update({f"{key}/{name}": flat[i] for i, name in enumerate(names)})
        else:
            out[key] = value
    return out


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file and rename it over ``path`` (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _truncate_jsonl(path: Path, key: str, last: int) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get(key, -1) <= last]
    path.write_text("".join(line + "\n" for line in kept))


class RunLogger:
    def __init__(self, run_dir: Path, resume: tuple[int, int] | None = None, tensorboard: bool = True) -> None:
        """``resume = (last_epoch, last_step)`` of the checkpoint: later log lines are dropped."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.steps_path = self.run_dir / "steps.jsonl"
        self.epochs_path = self.run_dir / "epochs.jsonl"
        if resume is None:
            for path in (self.steps_path, self.epochs_path, self.run_dir / "epochs.csv"):
                path.unlink(missing_ok=True)
        else:
            _truncate_jsonl(self.steps_path, K.STEP.key(), resume[1])
            _truncate_jsonl(self.epochs_path, K.EPOCH.key(), resume[0])
        self.epochs: list[dict[str, Any]] = (
            [json.loads(line) for line in self.epochs_path.read_text().splitlines() if line]
            if self.epochs_path.exists()
            else []
        )
        self._steps = self.steps_path.open("a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=None if resume is None else resume[1] + 1)

    def log_step(self, step: int, epoch: int, values: Mapping[str, Any]) -> dict[str, Any]:
        row = {K.STEP.key(): step, K.EPOCH.key(): epoch, **to_floats(values)}
        self._steps.write(json.dumps(row) + "\n")
        self._steps.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key not in _COUNTERS and isinstance(value, float):
                    self._tb.add_scalar(f"step/{key}", value, step)
        return row

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, Any]) -> dict[str, Any]:
        row = {K.EPOCH.key(): epoch, K.STEP.key(): step, **to_floats(values)}
        self.epochs.append(row)
        with self.epochs_path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        columns = sorted({k for r in self.epochs for k in r}, key=lambda k: (k not in _COUNTERS, k))
        with (self.run_dir / "epochs.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.epochs)
        if self._tb is not None:
            for key, value in row.items():
                if key not in _COUNTERS and isinstance(value, float):
                    self._tb.add_scalar(f"epoch/{key}", value, epoch)
            self._tb.flush()
        return row

    def close(self) -> None:
        self._steps.close()
        if self._tb is not None:
            self._tb.close()


def environment() -> dict[str, Any]:
    """Versions and machine facts saved with every run."""
    import numpy
    import torchvision

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
        "argv": sys.argv,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        root = Path(__file__).resolve().parents[3]
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info
