"""Small user-facing promises: resolved config.json, Δp in results.json, telling run names,
a random-initialisation warning, epochs counted from 1, a progress bar with loss and speed."""

from __future__ import annotations

import io
import json

from rich.console import Console

from repmtl.train.config import TrainConfig
from repmtl.train.console import training_progress
from repmtl.train.experiment import run_experiment
from repmtl.train.resolve import resolve
from repmtl.train.trainer import train
from tests import _tiny  # noqa: F401


def test_config_json_holds_resolved_values(tmp_path):
    result = train(TrainConfig(benchmark="tiny", method="mgda", out=str(tmp_path), progress=False))
    config = json.loads((result.run_dir / "config.json").read_text())
    assert (config["lr"], config["batch_size"], config["weight_decay"], config["epochs"]) == (1e-2, 16, 0.0, 2)
    assert config["level"] == "parameters" and config["loss_transform"] == "none" and config["name"] == "mgda-seed0"


def test_results_json_holds_delta_p_and_baselines(tmp_path):
    result = run_experiment(TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False, epochs=1))
    saved = json.loads((result.run.run_dir / "results.json").read_text())
    assert saved["improvement"]["delta_p_task"] == result.improvement.task
    assert set(saved["baselines"]) == {"a", "b"}
    assert all((tmp_path / "tiny").joinpath(p.split("/")[-1], "results.json").exists() for p in saved["baselines"].values())


def test_run_names_include_non_default_arguments():
    def name(**kw):
        return resolve(TrainConfig(benchmark="tiny", **kw)).name

    assert name(method="mgda", method_args={"normalization": "l2"}) == "mgda-normalization=l2-seed0"
    assert name(method="mgda", method_args={"normalization": "none"}) == "mgda-seed0"  # the default
    assert name(method="fixed", method_args={"weights": [1, 2]}, seed=3) == "fixed-weights=1.0,2.0-seed3"
    assert name(method="repmtl", regularizer_args={"tau": 0.5}) == "ew+repmtl-tau=0.5-seed0"
    assert name(method="mgda", level="representation") == "mgda-rep-seed0"


def test_paper_preset_from_random_init_warns(tmp_path):
    buffer = io.StringIO()
    train(TrainConfig(benchmark="tiny-paper", out=str(tmp_path), progress=False, epochs=1),
          console=Console(file=buffer, width=300))
    assert "random initialisation" in buffer.getvalue() and "--pretrained" in buffer.getvalue()
    buffer = io.StringIO()
    train(TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False, epochs=1), console=Console(file=buffer))
    assert "random initialisation" not in buffer.getvalue()


def test_console_epochs_count_from_one(tmp_path):
    buffer = io.StringIO()
    train(TrainConfig(benchmark="tiny", out=str(tmp_path), progress=False), console=Console(file=buffer, width=300))
    lines = [line for line in buffer.getvalue().splitlines() if " epoch " in line]
    assert [line.split(" epoch ")[1].split()[0] for line in lines] == ["1/2", "2/2"]


def test_progress_bar_shows_loss_and_speed():
    progress = training_progress(Console(file=io.StringIO()))
    task = progress.add_task("epoch 1/1", total=3, loss="")
    progress.update(task, advance=1)
    progress.update(task, advance=1, loss="loss 0.1234")
    shown = Console(file=io.StringIO(), width=200, record=True)
    shown.print(progress.make_tasks_table(progress.tasks))
    text = shown.export_text()
    assert "loss 0.1234" in text and "2/3" in text and "steps/s" in text
