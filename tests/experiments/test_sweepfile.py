"""Sweep files: grid expansion, run names and clear errors."""

import sys
from pathlib import Path

import pytest

from repmtl.experiments.sweepfile import SweepError, load_sweep, read_toml

SMOKE = Path(__file__).resolve().parents[2] / "docs" / "sweeps" / "multidigits-smoke.toml"

TOML = """
benchmarks = ["multidigits", {name = "synthscenes", options = {size = 16}}]
seeds = [0, 1]
regularizers = ["none", {name = "cosreg", grid = {weight = [0.1, 1.0]}}]
overrides = [{}, {lr = 0.01}]

[train]
epochs = 1
max_steps = 2

[[methods]]
name = "fixed"
grid = {weights = [[1.0, 2.0], [2.0, 1.0]]}

[[methods]]
name = "mgda"
args = {normalization = "l2"}
level = "representation"

[[methods]]
name = "repmtl"
"""


def _write(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_is_the_product_of_its_axes(tmp_path):
    spec = load_sweep(_write(tmp_path, TOML))
    configs = spec.configs(tmp_path / "out")
    # benchmarks 2 × overrides 2 × seeds 2 × (fixed 2 + mgda 1) × regularizers 3, + repmtl (own regularizer)
    assert len(configs) == 2 * 2 * 2 * (3 * 3 + 1)
    names = {c.name for c in configs}
    assert len(names) == len(configs) // 2  # each name once per benchmark
    assert "fixed-weights=1,2-seed0" in names
    assert "mgda+cosreg-normalization=l2-level=representation-weight=0.1-lr=0.01-seed1" in names
    assert "repmtl-seed0" in names and not any(n.startswith("repmtl+") for n in names)
    synth = next(c for c in configs if c.benchmark == "synthscenes" and c.name == "repmtl-lr=0.01-seed1")
    assert synth.options == {"size": 16} and synth.lr == 0.01 and synth.epochs == 1 and synth.max_steps == 2
    assert all(c.run_dir().parent == tmp_path / "out" / c.benchmark for c in configs)


def test_yaml_gives_the_same_grid(tmp_path):
    yaml = pytest.importorskip("yaml")
    toml_path = _write(tmp_path, TOML)
    data = read_toml(toml_path)
    toml_configs = load_sweep(toml_path).configs(tmp_path)
    yaml_configs = load_sweep(_write(tmp_path, yaml.safe_dump(data), "sweep.yaml")).configs(tmp_path)
    assert toml_configs == yaml_configs


def test_missing_pyyaml_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(SweepError, match=r"repmtl\[yaml\]"):
        load_sweep(_write(tmp_path, "benchmarks: [multidigits]\n", "s.yml"))


def test_the_documented_smoke_sweep_parses():
    configs = load_sweep(SMOKE).configs("out")
    assert len(configs) == 14
    assert {c.method for c in configs} == {"ew", "avgnorm", "fixed", "mgda", "pcgrad", "repmtl"}


@pytest.mark.parametrize("text, message", [
    ("benchmarks = ['multidigits']\nmethods = ['ew']\ncolour = 1\n", r"unknown key\(s\) \['colour'\]"),
    ("methods = ['ew']\n", "`benchmarks` is required"),
    ("benchmarks = ['multidigits']\nmethods = ['ew']\nseeds = [0, 0]\n", "repeats a seed"),
    ("benchmarks = ['multidigits']\nmethods = ['ew']\n[train]\nlearning_rate = 1\n",
     r"\[train\]: unknown field\(s\) \['learning_rate'\]"),
    ("benchmarks = ['multidigits']\nmethods = ['ew']\n[train]\nseed = 3\n", "set by the sweep's axes"),
    ("benchmarks = ['multidigits']\n[[methods]]\nname = 'fixed'\ngrid = {weights = []}\n",
     "methods #1: grid `weights` must be a non-empty list"),
    ("benchmarks = ['multidigits']\n[[methods]]\nname = 'mgda'\nargs = {a = 1}\ngrid = {a = [1]}\n",
     r"\['a'\] appear in both"),
    ("benchmarks = ['multidigits']\nmethods = ['ew']\nregularizers = [{name = 'none', args = {x = 1}}]\n",
     "`none` takes no args"),
    ("benchmarks = ['multidigits'\n", "is not valid TOML"),
])
def test_errors_name_the_file_and_the_entry(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(SweepError, match=message) as info:
        load_sweep(path)
    assert str(path) in str(info.value)


def test_two_runs_sharing_a_folder_are_refused(tmp_path):
    text = ("benchmarks = ['multidigits']\n[[methods]]\nname = 'ew'\n[[methods]]\nname = 'ew'\n")
    with pytest.raises(SweepError, match="same run twice"):
        load_sweep(_write(tmp_path, text)).configs(tmp_path)
    clash = ("benchmarks = ['multidigits']\n[[methods]]\nname = 'fixed'\ngrid = {weights = ['1,2', [1, 2]]}\n")
    with pytest.raises(SweepError, match="share the folder"):
        load_sweep(_write(tmp_path, clash)).configs(tmp_path)


def test_long_names_are_shortened_with_a_hash(tmp_path):
    weights = [round(0.1 * i, 1) for i in range(1, 40)]
    text = f"benchmarks = ['multidigits']\n[[methods]]\nname = 'fixed'\nargs = {{weights = {weights}}}\n"
    (config,) = load_sweep(_write(tmp_path, text)).configs(tmp_path)
    assert len(config.name) <= 96 and config.name.endswith("-seed0")


def test_method_entries_restricted_to_benchmarks_and_variants_of_one_benchmark(tmp_path):
    text = """
benchmarks = ["multidigits", {name = "synthscenes", options = {n_train = 8}},
              {name = "synthscenes", options = {n_train = 16}}]
[[methods]]
name = "ew"
[[methods]]
name = "fixed"
benchmarks = ["multidigits"]
args = {weights = [1.0, 2.0]}
"""
    runs = load_sweep(_write(tmp_path, text)).configs(tmp_path / "out")
    assert sorted((r.benchmark, r.method) for r in runs) == [("multidigits", "ew"), ("multidigits", "fixed"),
                                                             ("synthscenes", "ew"), ("synthscenes", "ew")]
    synth = sorted(r.run_name() for r in runs if r.benchmark == "synthscenes")
    assert synth == ["ew-options=n_train:16-seed0", "ew-options=n_train:8-seed0"]
    assert next(r.run_name() for r in runs if r.benchmark == "multidigits") == "ew-seed0"
    bad = text.replace('benchmarks = ["multidigits"]\nargs', 'benchmarks = ["nyuv2"]\nargs')
    with pytest.raises(SweepError, match=r"names benchmarks \['nyuv2'\]"):
        load_sweep(_write(tmp_path, bad))
