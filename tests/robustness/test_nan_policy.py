"""A non-finite loss skips the step (nothing changes), is logged with its task and step, and
``max_bad_steps`` consecutive ones stop the run with last.pt left as it was."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from repmtl.train import trainer as trainer_module
from repmtl.train.config import TrainConfig
from repmtl.train.faults import TrainingDiverged
from repmtl.train.trainer import Trainer
from tests import _tiny  # noqa: F401


def _nan_head_at(trainer: Trainer, bad_steps) -> None:
    """Task ``a``'s predictions are NaN at the given (1-based) steps."""
    def hook(_module, _inputs, output):
        return output * float("nan") if trainer.step + 1 in bad_steps else output

    trainer.model.heads["a"].register_forward_hook(hook)


def _state(trainer: Trainer):
    return copy.deepcopy({"model": trainer.model.state_dict(), "optimizers": trainer.optimizers.state_dict(),
                          "method": trainer.method.state_dict()})


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_a_nan_loss_skips_the_step_and_changes_nothing(tmp_path, monkeypatch):
    trainer = Trainer(TrainConfig(benchmark="tiny", method="famo", out=str(tmp_path), name="r", epochs=2,
                                  log_every=10, progress=False))
    _nan_head_at(trainer, {2})
    seen = {}
    original = trainer_module.Trainer._train_step

    def watched(self, batch, **kwargs):
        before = _state(self)
        result = original(self, batch, **kwargs)
        seen[self.step + 1] = (before, _state(self), result)
        return result

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", watched)
    trainer.fit()
    before, after, result = seen[2]
    assert result.causes == ("a",) and _same(before, after)
    assert not _same(*seen[3][:2])  # the next step trains again
    run = tmp_path / "tiny" / "r"
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert [row for row in steps if "skipped/a" in row] == [{"step": 2, "epoch": 1, "skipped/a": 1.0}]
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert [e["skipped_steps"] for e in epochs] == [1, 0]
    assert all(torch.isfinite(torch.tensor(e["train/loss/a"])) for e in epochs)


def test_consecutive_nan_steps_stop_the_run_and_keep_last_good(tmp_path, capsys):
    trainer = Trainer(TrainConfig(benchmark="tiny", out=str(tmp_path), name="r", epochs=3, max_bad_steps=2,
                                  progress=False))
    _nan_head_at(trainer, range(5, 100))  # from the second step of epoch 2 on
    last = tmp_path / "tiny" / "r" / "checkpoints" / "last.pt"
    with pytest.raises(TrainingDiverged, match="2 consecutive steps skipped .*step 6: non-finite loss of a") as stop:
        trainer.fit()
    assert stop.value.exit_code == 3
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 3  # the end of epoch 1: nothing written since
    err = " ".join(capsys.readouterr().err.split())
    assert "step 5 skipped: non-finite loss of a" in err and "step 6 skipped" in err
