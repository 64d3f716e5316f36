"""SIGINT / SIGTERM write a checkpoint mid-epoch, say how to resume, and resuming continues exactly."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from typer.testing import CliRunner

from repmtl.cli import app
from repmtl.train import trainer as trainer_module
from repmtl.train.config import TrainConfig
from repmtl.train.interrupt import TrainingInterrupted
from repmtl.train.trainer import train
from tests import _tiny  # noqa: F401

runner = CliRunner()


def _signal_at(monkeypatch, step: int, signum: int) -> None:
    original = trainer_module.Trainer._train_step

    def step_then_signal(self, batch, **kwargs):
        record = original(self, batch, **kwargs)
        if self.step + 1 == step:
            os.kill(os.getpid(), signum)
        return record

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", step_then_signal)


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("method", ["famo", "nashmtl", "pcgrad", "rlw"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_epoch_then_resume_is_exact(tmp_path, monkeypatch, method, signum):
    config = {"benchmark": "tiny", "method": method, "out": str(tmp_path), "progress": False, "epochs": 3,
              "log_every": 1}
    reference = train(TrainConfig(**config, name="straight"))
    with monkeypatch.context() as patch:
        _signal_at(patch, step=5, signum=signum)  # epoch 2, after its second batch
        with pytest.raises(TrainingInterrupted) as stopped:
            train(TrainConfig(**config, name="stopped"))
    assert stopped.value.epoch == 2 and stopped.value.step == 5
    assert stopped.value.exit_code == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum]
    resumed = train(TrainConfig(**config, name="stopped"), resume=True)
    expected, got = _weights(reference.run_dir), _weights(resumed.run_dir)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert reference.test == resumed.test
    straight = (reference.run_dir / "steps.jsonl").read_text().splitlines()
    again = (resumed.run_dir / "steps.jsonl").read_text().splitlines()
    assert [line.split('"lr"')[1] for line in straight] == [line.split('"lr"')[1] for line in again]


def test_cli_prints_the_resume_command(tmp_path, monkeypatch):
    _signal_at(monkeypatch, step=2, signum=signal.SIGINT)
    args = ["train", "--benchmark", "tiny", "--out", str(tmp_path), "--no-progress", "--no-baseline"]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    text = " ".join(result.output.split())
    assert "SIGINT" in text and "--resume" in text and "Traceback" not in result.output
    assert (tmp_path / "tiny" / "ew-seed0" / "checkpoints" / "last.pt").exists()
