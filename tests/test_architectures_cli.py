"""Every architecture trains from the command line on multidigits and synthscenes (tiny sizes)
with EW, a Gramian method at parameter level (MGDA) and Rep-MTL on the per-task ``Z_t``
(docs/architectures.md: the per-task saliency rule), one step each. The default suite runs each
architecture once (methods and benchmarks in rotation, so every one of them is covered); the
full product (48 runs, about a minute and a half) is marked slow."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from repmtl.cli import app
from repmtl.nets.architectures import ARCHITECTURES

runner = CliRunner()
BENCHMARKS = {
    "multidigits": [],
    "synthscenes": ["--option", "n_train=8", "--option", "n_val=4", "--option", "n_test=4", "--option", "size=16x24"],
}
METHODS = {"ew": ["--method", "ew"], "mgda": ["--method", "mgda", "--level", "parameters"],
           "repmtl": ["--method", "repmtl"]}


CASES = [(a, m, b) for a in ARCHITECTURES for m in METHODS for b in BENCHMARKS]
ROTATION = {(a, list(METHODS)[i % 3], list(BENCHMARKS)[i % 2]) for i, a in enumerate(ARCHITECTURES)}


@pytest.mark.parametrize(
    "architecture, method, benchmark",
    [c if c in ROTATION else pytest.param(*c, marks=pytest.mark.slow) for c in CASES],
)
def test_trains_from_the_cli(tmp_path, architecture, method, benchmark):
    args = ["train", "--benchmark", benchmark, *BENCHMARKS[benchmark], "--architecture", architecture,
            *METHODS[method], "--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--no-progress",
            "--no-baseline", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (results,) = (tmp_path / benchmark).glob("*/results.json")
    config = json.loads(results.read_text())["config"]
    assert config["architecture"] == architecture
    assert (config["regularizer"] == "repmtl") == (method == "repmtl")
