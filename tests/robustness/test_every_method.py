"""Every registered method (and the Rep-MTL preset) trains through the trainer with a log line
every step, at each level it supports, on a shared-input and a multi-input benchmark."""

from __future__ import annotations

import json
import math

import pytest

from repmtl import methods
from repmtl.train.config import TrainConfig
from repmtl.train.trainer import train
from tests import _tiny  # noqa: F401  (registers the tiny benchmarks)

REQUIRED_ARGS = {"fixed": {"weights": [1.0, 2.0]}}


def _cases(multi_input: bool) -> list[tuple[str, str]]:
    cases = []
    for name, cls in methods.available().items():
        levels = ("parameters",) if cls.consumes == "losses" else cls.levels
        for level in levels:
            if multi_input and level == "representation":
                continue  # refused for multi-input data (tested in test_api_traps)
            cases.append((name, level))
    return cases


def _train(tmp_path, benchmark: str, method: str, level: str, **extra):
    config = TrainConfig(benchmark=benchmark, method=method, method_args=REQUIRED_ARGS.get(method, {}), level=level,
                         out=str(tmp_path), epochs=2, log_every=1, progress=False, **extra)
    return train(config)


def _check_logs(run_dir, steps: int) -> None:
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for row in rows:
        numbers = [v for k, v in row.items() if isinstance(v, float)]
        assert all(math.isfinite(v) for v in numbers), row


@pytest.mark.parametrize("method, level", _cases(multi_input=False))
def test_every_method_trains_and_logs_every_step(tmp_path, method, level):
    result = _train(tmp_path, "tiny", method, level)
    _check_logs(result.run_dir, steps=2 * 3)  # 48 samples / batch 16 = 3 steps per epoch
    assert result.best_epoch in (1, 2)


@pytest.mark.parametrize("method, level", _cases(multi_input=True))
def test_every_method_trains_on_multi_input_data(tmp_path, method, level):
    result = _train(tmp_path, "tiny-multi", method, level)
    _check_logs(result.run_dir, steps=2 * 6)


@pytest.mark.parametrize("regularizer", ["repmtl", "cosreg"])
def test_regularizers_train_and_log_every_step(tmp_path, regularizer):
    result = _train(tmp_path, "tiny", "ew", "parameters", regularizer=regularizer)
    _check_logs(result.run_dir, steps=6)
    penalties = {k for k in json.loads((result.run_dir / "steps.jsonl").read_text().splitlines()[0]) if "penalty" in k}
    assert penalties


def test_rep_mtl_preset_trains(tmp_path):
    result = train(TrainConfig(benchmark="tiny", method="repmtl", out=str(tmp_path), log_every=1, progress=False))
    assert result.config.regularizer == "repmtl" and result.config.loss_transform == "log"
    _check_logs(result.run_dir, steps=6)


def test_vector_info_is_logged_per_task(tmp_path):
    """FAMO reports its per-task softmax weights ``z``: one log entry per task (bug: crashed)."""
    result = _train(tmp_path, "tiny", "famo", "parameters")
    row = json.loads((result.run_dir / "steps.jsonl").read_text().splitlines()[0])
    assert {"info/famo_z/a", "info/famo_z/b"} <= set(row)
