"""QM9 without its extra, and a QM9 run's footprint: one clear line naming the ``[qm9]`` extra
(never a traceback), and nothing written outside the ``--out`` folder (the graph cache lives in
``<out>/.cache/qm9``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from repmtl.bench.command import main as bench_main
from repmtl.cli import app
from repmtl.data import qm9
from tests.qm9._fixtures import write_dataset

needs_pyg = pytest.mark.skipif(importlib.util.find_spec("torch_geometric") is None,
                               reason="torch_geometric (the qm9 extra) not installed")
ROOT = Path(__file__).resolve().parents[2]
EXTRA_HINT = 'pip install -e ".[qm9]"'
SMALL = ["--option", "train_size=12", "--option", "val_size=4", "--option", "hidden=8"]


def _train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--benchmark", "qm9", "--out", str(out), "--epochs", "1", "--max-steps", "1",
            "--batch-size", "4", "--no-progress", "--no-baseline", *SMALL, *extra]


def _one_clear_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def _hide_torch_geometric(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "torch_geometric" or m.startswith("torch_geometric.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch_geometric", None)  # `import torch_geometric` raises ImportError


def test_cli_without_torch_geometric_names_the_extra(tmp_path, monkeypatch):
    _hide_torch_geometric(monkeypatch)
    csv = write_dataset(tmp_path / "csv")
    line = _one_clear_line(CliRunner().invoke(app, _train_args(tmp_path / "out", "--data-root", str(csv))))
    assert "torch_geometric" in line and EXTRA_HINT in line
    assert not any((tmp_path / "out").rglob("*.json"))


def test_cli_without_qm9pack_names_the_extra_and_data_root(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else real(name, *a))
    line = _one_clear_line(CliRunner().invoke(app, _train_args(tmp_path / "out")))
    assert "qm9pack" in line and EXTRA_HINT in line and "--data-root" in line


def test_bench_qm9_workload_without_torch_geometric(monkeypatch, capsys):
    _hide_torch_geometric(monkeypatch)
    code = bench_main(["--workloads", "qm9", "--tasks", "11", "--methods", "ew", "--quiet", "--rounds", "1",
                       "--steps", "1", "--warmup", "0"])
    err = capsys.readouterr().err
    assert code == 2 and EXTRA_HINT in err and "Traceback" not in err


@needs_pyg
def test_a_run_writes_nothing_outside_out(tmp_path):
    """The whole CLI in a fresh process with an empty HOME and working folder: afterwards both
    are still empty, and the graph cache sits in ``<out>/.cache/qm9``."""
    home, cwd, out = tmp_path / "home", tmp_path / "cwd", tmp_path / "out"
    home.mkdir()
    cwd.mkdir()
    csv = write_dataset(tmp_path / "csv")
    env = {k: v for k, v in os.environ.items() if k not in (qm9.CACHE_ENV, "XDG_CACHE_HOME", "TORCH_HOME")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "repmtl.cli", *_train_args(out, "--data-root", str(csv))]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(home.rglob("*")) == [] and sorted(cwd.rglob("*")) == []
    (cache,) = (out / ".cache" / "qm9").iterdir()
    assert cache.suffix == ".npz"
    assert (out / "qm9" / "ew-seed0" / "results.json").exists()
