"""The plateau lr schedule (``TrainDefaults.lr_plateau``): stepped on the validation selection
score, its state in ``last.pt`` so a resumed run follows the same lr (and weights) trajectory."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from repmtl.benchmarks import PlateauSchedule, register_benchmark, registered
from repmtl.data import available_benchmarks
from repmtl.train import TrainConfig, Trainer, train
from repmtl.train.optim import Optimizers
from tests import _tiny  # noqa: F401

# threshold_mode="abs" with a huge threshold: only the first epoch counts as an improvement, so
# with patience 1 the lr is cut after epoch 3 (and 5, ...): a known schedule to check resumes on.
FORCED = PlateauSchedule(factor=0.5, patience=1, threshold=1e9, threshold_mode="abs")
if "tiny-plateau" not in registered():
    tiny = registered()["tiny"]
    register_benchmark(replace(tiny, name="tiny-plateau", defaults=replace(tiny.defaults, lr_plateau=FORCED)))


def _config(tmp_path, **overrides) -> TrainConfig:
    base = {"benchmark": "tiny-plateau", "out": str(tmp_path), "epochs": 4, "batch_size": 8, "lr": 0.01,
            "progress": False, "method": "ew"}
    return TrainConfig(**{**base, **overrides})


def _lrs(run_dir) -> list[float]:
    return [json.loads(line)["lr"] for line in (run_dir / "epochs.jsonl").read_text().splitlines()]


def test_the_qm9_presets_use_the_papers_plateau_schedule():
    """Navon et al. 2022 (and FAMO's copy of their trainer): factor 0.7, patience 5, min lr 1e-5."""
    for name in ("qm9", "qm9-small"):
        plateau = available_benchmarks()[name].defaults.lr_plateau
        assert (plateau.factor, plateau.patience, plateau.min_lr, plateau.threshold_mode) == (0.7, 5, 1e-5, "rel")
        assert available_benchmarks()[name].defaults.lr_step is None


def test_plateau_is_stepped_on_the_negated_selection_score():
    weight = torch.nn.Parameter(torch.zeros(1))
    opts = Optimizers([torch.optim.SGD([weight], lr=1.0)], None, 0.5, PlateauSchedule(factor=0.5, patience=0))
    opts.end_epoch(-10.0)  # Δm 10 %: the first value is the best so far
    opts.end_epoch(-5.0)   # Δm 5 %: better (lower Δm), lr kept
    assert opts.lr == 1.0
    opts.end_epoch(-6.0)   # Δm 6 %: worse, patience 0: cut
    assert opts.lr == 0.5
    with pytest.raises(ValueError, match="selection score"):
        opts.end_epoch()
    with pytest.raises(ValueError, match="choose one"):
        Optimizers([torch.optim.SGD([weight], lr=1.0)], 10, 0.5, PlateauSchedule(factor=0.5, patience=0))


def test_resume_keeps_the_plateau_state(tmp_path):
    train(_config(tmp_path, name="straight"))
    train(_config(tmp_path, name="split", epochs=2))
    train(_config(tmp_path, name="split", epochs=4), resume=True)
    straight, split = tmp_path / "tiny-plateau" / "straight", tmp_path / "tiny-plateau" / "split"
    assert _lrs(straight) == _lrs(split) == [0.01, 0.01, 0.01, 0.005]
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_a_resume_without_the_scheduler_state_would_differ(tmp_path):
    """Guards the resume test: a fresh plateau schedule after epoch 2 does not cut the lr at epoch 3."""
    train(_config(tmp_path, name="fresh", epochs=2))
    trainer = Trainer(_config(tmp_path, name="fresh", epochs=4))
    trainer.epoch = 2  # continue without restoring anything
    trainer.fit(overwrite=True)
    assert _lrs(tmp_path / "tiny-plateau" / "fresh")[-2:] == [0.01, 0.01]
