"""kill -9 at any moment, inside a checkpoint write included, then ``--resume``: the same final
weights as a run never stopped; an unreadable last.pt falls back on last.prev.pt."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from repmtl.train.config import TrainConfig
from repmtl.train.trainer import train
from tests import _tiny  # noqa: F401
from tests.robustness._killable import CONFIG

ROOT = Path(__file__).resolve().parents[2]


def _process(out: Path, *extra: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.robustness._killable", str(out), *extra], cwd=ROOT, env=env,
                            stdout=stdout, stderr=subprocess.PIPE)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "tiny" / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]


def _finish(out: Path) -> None:
    done = _process(out)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err.decode()[-2000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    train(TrainConfig(**CONFIG, out=str(out)))
    return _weights(out)


@pytest.mark.slow  # two interpreters per case: about 20 s each here
@pytest.mark.parametrize("kill_at", [2, 3])  # the first last.pt write; the second epoch's best.pt
def test_killed_inside_a_checkpoint_write_resumes_exactly(tmp_path, reference, kill_at):
    dying = _process(tmp_path, str(kill_at))
    dying.communicate(timeout=300)
    assert dying.returncode == -signal.SIGKILL
    assert list((tmp_path / "tiny" / "run" / "checkpoints").glob(".*.tmp"))  # the torn temporary is there
    _finish(tmp_path)
    got = _weights(tmp_path)
    assert all(torch.equal(reference[k], got[k]) for k in reference)


@pytest.mark.slow
def test_killed_at_random_moments_resumes_exactly(tmp_path, reference):
    rng = random.Random(13)
    kills, kills_after_a_checkpoint = 0, 0
    last = tmp_path / "tiny" / "run" / "checkpoints" / "last.pt"
    for _ in range(8):
        proc = _process(tmp_path, "slow", stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        # In slow mode an epoch lasts about 1.4 s, so a process killed within 2.8 s gains at most
        # one epoch: the 4-epoch run needs at least 4 processes, and kills land in steps,
        # evaluations and checkpoint writes alike.
        time.sleep(rng.uniform(0.3, 2.8))
        if proc.poll() is not None:
            break
        kills_after_a_checkpoint += last.exists()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += 1
    _finish(tmp_path)
    assert kills >= 3, f"only {kills} kills landed before the run finished"
    assert kills_after_a_checkpoint >= 2, "the kills never interrupted a resumed run"
    got = _weights(tmp_path)
    assert all(torch.equal(reference[k], got[k]) for k in reference)


def test_unreadable_last_falls_back_on_the_previous(tmp_path, reference, capsys):
    config = TrainConfig(**{**CONFIG, "epochs": 3}, out=str(tmp_path))
    train(config)
    last = tmp_path / "tiny" / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # torn by a crash of the machine
    resumed = train(TrainConfig(**CONFIG, out=str(tmp_path)), resume=True)  # epoch 3 again from last.prev.pt, then 4
    assert "last.prev.pt" in " ".join(capsys.readouterr().err.split())
    got = _weights(resumed.run_dir.parent.parent)
    assert all(torch.equal(reference[k], got[k]) for k in reference)
