"""Checkpoints never execute code, and unreadable ones get one clear line."""

from __future__ import annotations

import errno
import os
import pickle
import random

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from repmtl.cli import app
from repmtl.train import checkpoint as ckpt
from repmtl.train.config import TrainConfig
from repmtl.train.trainer import train
from tests import _tiny  # noqa: F401

runner = CliRunner()


class _Payload:
    """Unpickling this object runs ``os.system``: the attack a crafted last.pt carries."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _finished_run(tmp_path, **extra):
    config = TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False, name="run", **extra)
    train(config)
    return tmp_path / "tiny" / "run"


def _without_previous(run):
    """The error path: no older checkpoint to fall back on (tests/robustness/test_crash_resume.py has the fallback)."""
    (run / "checkpoints" / "last.prev.pt").unlink()


def _cli_resume(tmp_path) -> list[str]:
    return ["train", "--benchmark", "tiny", "--out", str(tmp_path), "--name", "run", "--no-progress",
            "--no-baseline", "--resume"]


def test_crafted_checkpoint_does_not_run_code(tmp_path):
    run = _finished_run(tmp_path)
    _without_previous(run)
    marker = tmp_path / "pwned"
    with (run / "checkpoints" / "last.pt").open("wb") as handle:
        pickle.dump({"model": _Payload(str(marker))}, handle)
    with pytest.raises(ckpt.CheckpointError, match="refusing to load it"):
        ckpt.load(run / "checkpoints" / "last.pt")
    result = runner.invoke(app, _cli_resume(tmp_path))
    assert result.exit_code == 2 and not marker.exists()
    assert "last.pt" in result.output and "Traceback" not in result.output


def test_crafted_torch_save_checkpoint_does_not_run_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(str(tmp_path / "pwned"))}, path)
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load(path)
    assert not (tmp_path / "pwned").exists()


#: random bytes that fail in the weights-only unpickler in each way seen: an unpickling error
#: (seed 0), IndexError (2; regression: it escaped as a traceback), KeyError (20), a decode error (195)
RANDOM_SEEDS = (0, 2, 20, 195)


@pytest.mark.parametrize("damage", ["truncate", "empty", *(f"random-{seed}" for seed in RANDOM_SEEDS)])
def test_damaged_checkpoint_gets_one_clear_line(tmp_path, damage):
    run = _finished_run(tmp_path)
    _without_previous(run)
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    if damage.startswith("random-"):
        last.write_bytes(random.Random(int(damage.removeprefix("random-"))).randbytes(4096))
    else:
        last.write_bytes({"truncate": data[: len(data) // 2], "empty": b""}[damage])
    result = runner.invoke(app, _cli_resume(tmp_path))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(last) in lines[0].replace("\n", ""), result.output
    assert ("empty" if damage == "empty" else "corrupt") in lines[0] or "refusing" in lines[0]


def _flipped(data: bytes, byte: int, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[byte] ^= 1 << bit
    return bytes(damaged)


def test_any_damage_torch_load_trips_on_is_a_checkpoint_error(tmp_path):
    """Damaged bytes fail inside torch.load as struct.error, TypeError, AttributeError,
    AssertionError, ... (regression: those escaped as tracebacks and skipped the fall-back to
    the previous checkpoint); each is the one clear CheckpointError."""
    torch.manual_seed(0)
    good, legacy = tmp_path / "good.pt", tmp_path / "legacy.pt"
    torch.save({"model": {"w": torch.randn(4, 3), "b": torch.zeros(3)}, "step": 7}, good)
    torch.save({"w": torch.randn(4, 3)}, legacy, _use_new_zipfile_serialization=False)
    data = good.read_bytes()
    cases = {
        **{f"random-2-{seed}": random.Random(seed).randbytes(2) for seed in (10, 19, 22)},
        "random-8-120": random.Random(120).randbytes(8),
        **{f"flip-{byte}-{bit}": _flipped(data, byte, bit) for byte, bit in ((125, 0), (174, 0), (193, 0), (302, 3))},
        "legacy-truncated": legacy.read_bytes()[:100],
    }
    for name, raw in cases.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(raw)
        with pytest.raises(ckpt.CheckpointError, match="corrupt|refusing|does not hold"):
            ckpt.load(path)


def test_checkpoints_hold_only_plain_values(tmp_path):
    run = _finished_run(tmp_path, method="nashmtl")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # raises on any other object
    assert isinstance(state["rng"]["numpy"][1], torch.Tensor)


def test_rng_state_round_trips():
    state = ckpt.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    ckpt.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_stale_temporaries_are_removed_on_start(tmp_path):
    run = _finished_run(tmp_path, epochs=1)
    stale = run / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False, name="run", epochs=2), resume=True)
    assert not stale.exists()


def test_full_disk_is_one_clear_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    args = ["train", "--benchmark", "tiny", "--out", str(tmp_path), "--no-progress", "--no-baseline"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "No space left on device" in result.output, result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.rglob("*.tmp"))
