"""The ``qm9`` / ``qm9-small`` presets through the trainer, the experiment and the CLI, on
CSV files the test writes (no qm9pack needed); one slow test on the real package."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from repmtl.benchmarks import BuildOptions
from repmtl.cli import app
from repmtl.data import available_benchmarks, qm9
from repmtl.metrics.improvement import delta_p
from repmtl.train import TrainConfig, train
from repmtl.train.experiment import (
    ExperimentResult,
    results_table,
    run_experiment,
)
from repmtl.train.persistence import RunResult
from tests.qm9._fixtures import write_dataset

needs_pyg = pytest.mark.skipif(importlib.util.find_spec("torch_geometric") is None,
                               reason="torch_geometric (the qm9 extra) not installed")


@pytest.fixture
def csv_folder(tmp_path):
    return write_dataset(tmp_path / "csv")


def _options(tmp_path) -> dict[str, object]:
    return {"cache_dir": str(tmp_path / "cache"), "train_size": 12, "val_size": 4, "hidden": 8}


def test_presets_are_registered_with_the_papers_settings():
    benchmarks = available_benchmarks()
    full, small = benchmarks["qm9"], benchmarks["qm9-small"]
    assert (full.defaults.epochs, full.defaults.batch_size, full.defaults.lr, full.defaults.optimizer) == (
        300, 120, 1e-3, "adam")
    assert small.defaults.batch_size == 120 and "limit_train" in small.options


@needs_pyg
def test_a_short_run_reports_per_target_mae(tmp_path, csv_folder):
    config = TrainConfig(benchmark="qm9", data_root=str(csv_folder), options=_options(tmp_path), out=str(tmp_path),
                         epochs=2, batch_size=4, max_steps=2, progress=False, method="pcgrad", level="representation")
    result = train(config)
    assert set(result.test) == set(qm9.TARGETS)
    assert all(scores["mae"] > 0 for scores in result.test.values())
    assert result.lower_is_better["u0"] == {"mae": True}


def test_qm9_small_limits_apply(tmp_path, csv_folder):
    options = {**_options(tmp_path), "limit_train": 6, "limit_val": 2, "limit_test": 3}
    bench = available_benchmarks()["qm9-small"]
    splits = bench.splits(BuildOptions(data_root=csv_folder, extra=options))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 2, 3)
    full = available_benchmarks()["qm9"].splits(BuildOptions(data_root=csv_folder, extra=_options(tmp_path)))
    assert splits.train.indices.tolist() == full.train.indices[:6].tolist()  # a prefix of the qm9 split


def test_unknown_option_and_bad_value_are_clear_errors(tmp_path, csv_folder):
    base = {"benchmark": "qm9", "data_root": str(csv_folder), "out": str(tmp_path), "epochs": 1, "max_steps": 1, "progress": False}
    with pytest.raises(ValueError, match="has no option"):
        train(TrainConfig(**base, options={**_options(tmp_path), "hiden": 8}))
    with pytest.raises(TypeError, match="train_size='12'"):
        train(TrainConfig(**base, options={**_options(tmp_path), "train_size": "12"}))


def test_delta_m_is_the_mean_relative_error_increase_and_is_printed():
    """Nash-MTL's Δm% (lower is better) on made-up MAEs, and its row in the results table."""
    mtl = {"mu": {"mae": 0.6}, "alpha": {"mae": 2.0}, "homo": {"mae": 0.1}}
    stl = {"mu": {"mae": 0.5}, "alpha": {"mae": 2.5}, "homo": {"mae": 0.1}}
    directions = {t: {"mae": True} for t in mtl}
    improvement = delta_p(mtl, stl, directions)
    assert improvement.delta_m == pytest.approx((20.0 - 20.0 + 0.0) / 3)
    mtl["homo"]["mae"] = 0.13
    improvement = delta_p(mtl, stl, directions)
    assert improvement.delta_m == pytest.approx((20.0 - 20.0 + 30.0) / 3) == -improvement.task

    def run(scores, name):
        return RunResult(run_dir=Path(name), config=TrainConfig(benchmark="qm9", name=name), tasks=tuple(mtl),
                         best_epoch=0, val=scores, test=scores, lower_is_better=directions)

    result = ExperimentResult(run(mtl, "mtl"), {t: run(stl, f"stl-{t}") for t in mtl}, improvement)
    console = Console(width=200, record=True)
    console.print(results_table(result))
    text = console.export_text()
    assert text.count("Δm % (↓)") == 1 and "+10.00" in text


@pytest.mark.slow
@needs_pyg
def test_experiment_reports_delta_m_next_to_delta_p(tmp_path, csv_folder):
    config = TrainConfig(benchmark="qm9", data_root=str(csv_folder), options=_options(tmp_path), out=str(tmp_path),
                         epochs=1, batch_size=4, max_steps=1, progress=False, method="ew")
    result = run_experiment(config)
    assert set(result.baselines) == set(qm9.TARGETS)
    relative = [(result.run.test[t]["mae"] - result.baseline_test[t]["mae"]) / result.baseline_test[t]["mae"] * 100
                for t in qm9.TARGETS]
    assert result.improvement.delta_m == pytest.approx(sum(relative) / len(relative))
    assert result.improvement.delta_m == pytest.approx(-result.improvement.task)


@needs_pyg
def test_cli_trains_qm9_end_to_end(tmp_path, csv_folder):
    options = [f"--option={k}={v}" for k, v in _options(tmp_path).items()]
    args = ["train", "--benchmark", "qm9", "--data-root", str(csv_folder), *options, "--out", str(tmp_path),
            "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--no-progress", "--no-baseline",
            "--method", "nashmtl"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "u0 / mae" in result.stdout and "cv / mae" in result.stdout
    saved = json.loads((tmp_path / "qm9" / "nashmtl-seed0" / "results.json").read_text())
    assert set(saved["test"]) == set(qm9.TARGETS)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_the_real_qm9pack_release(tmp_path):
    arrays = qm9.load_arrays(cache_dir=tmp_path, progress=False)
    assert len(arrays) == 130_831 and arrays.max_atoms == 29 and arrays.ids[0] == 1
    assert set(arrays.atoms.tolist()) == {1, 6, 7, 8, 9}
    assert arrays.targets[0, qm9.TARGETS.index("u0")] == pytest.approx(-17.1722, abs=1e-4)  # methane
    split = qm9.split_indices(len(arrays), 110_000, 10_000)
    assert len(split["test"]) == 10_831
