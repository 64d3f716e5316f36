"""Run folders stay inside --out, conflicts are found before any training, nothing finished is
overwritten, and I/O errors are one clear line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from repmtl.cli import app
from repmtl.train.config import TrainConfig
from repmtl.train.experiment import run_experiment
from repmtl.train.runfolder import RunFolderConflict, RunFolderError, check_run_name
from repmtl.train.trainer import train
from tests import _tiny  # noqa: F401

runner = CliRunner()
BASE = ["train", "--benchmark", "tiny", "--no-progress"]


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", "..", ".hidden", "", "a\\b", "x/../../y"])
def test_names_that_leave_the_output_folder_are_refused(tmp_path, name):
    out = tmp_path / "out"
    result = runner.invoke(app, [*BASE, "--out", str(out), "--name", name])
    assert result.exit_code == 2 and "not allowed" in result.output, result.output
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    with pytest.raises(RunFolderError):
        check_run_name(name)


def test_resume_of_finished_run_without_last_checkpoint_keeps_results(tmp_path):
    config = TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False, name="run")
    train(config)
    run = tmp_path / "tiny" / "run"
    (run / "checkpoints" / "last.pt").unlink()
    before = ((run / "results.json").read_bytes(), (run / "checkpoints" / "best.pt").read_bytes())
    with pytest.raises(RunFolderConflict, match="no checkpoints/last.pt"):
        train(config, resume=True)
    result = runner.invoke(app, [*BASE, "--out", str(tmp_path), "--name", "run", "--resume", "--no-baseline"])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert before == ((run / "results.json").read_bytes(), (run / "checkpoints" / "best.pt").read_bytes())


def test_new_run_refuses_a_folder_with_results(tmp_path):
    config = TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False, name="run")
    train(config)
    (tmp_path / "tiny" / "run" / "checkpoints" / "last.pt").unlink()
    with pytest.raises(RunFolderConflict, match="already holds"):
        train(config)


def test_conflict_is_reported_before_the_baselines_train(tmp_path):
    config = TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False, name="run")
    train(config)  # the run exists, its baselines do not
    with pytest.raises(RunFolderConflict):
        run_experiment(config)
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["run"]


def test_resume_and_overwrite_together_are_refused(tmp_path):
    result = runner.invoke(app, [*BASE, "--out", str(tmp_path), "--resume", "--overwrite"])
    assert result.exit_code == 2 and "choose one" in result.output


def test_unwritable_output_is_one_clear_line_and_leaves_no_baseline_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, [*BASE, "--out", str(blocker / "runs")])
    assert result.exit_code == 2 and "cannot write" in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_failed_baseline_leaves_no_partial_folder(tmp_path, monkeypatch):
    from repmtl.train import trainer as trainer_module

    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", broken)
    result = runner.invoke(app, [*BASE, "--out", str(tmp_path)])
    assert result.exit_code == 2 and "No space left on device" in result.output, result.output
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == []


def test_overwrite_starts_from_a_clean_folder(tmp_path):
    config = TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False, name="run", epochs=1)
    train(config)
    again = train(config, overwrite=True)
    assert json.loads((again.run_dir / "results.json").read_text())["best_epoch"] == 1
