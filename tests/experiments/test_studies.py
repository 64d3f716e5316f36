"""Studies: their recipes parse and plan; their analyses on fake run folders whose numbers are
chosen so every figure can be checked by hand."""

import csv
import io
import math
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from repmtl.cli import app
from repmtl.experiments.runs import find_runs
from repmtl.experiments.studies import STUDIES, Budget, get_study, write_study
from repmtl.experiments.studies.surrogate import gradient_methods
from repmtl.experiments.sweep import plan
from repmtl.experiments.sweepfile import load_sweep
from repmtl.train.config import TrainConfig

from ._fake_runs import write_baselines, write_run

runner = CliRunner()
TINY = Budget(epochs=1, max_steps=2, diagnostics_every=1)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_recipe_parses_and_plans(tmp_path, name):
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDIES[name].recipe(["multidigits", "synthscenes"], [0, 1], TINY))
    jobs = plan(load_sweep(path), tmp_path / "out")  # builds every method for its tasks
    runs = [j for j in jobs if j.kind == "run"]
    assert runs and all(j.config.epochs == 1 and j.config.max_steps == 2 for j in runs)
    bases = {j.config.benchmark.removeprefix("perturbed-").removeprefix("attention-") for j in runs}
    assert bases == {"multidigits", "synthscenes"}
    assert not (tmp_path / "out").exists()


def _steps(final: dict[str, float], early: dict[str, float], n: int = 10) -> list[dict]:
    """``n`` logged steps: ``early`` values, then ``final`` at the last step (the last 10 %)."""
    return [{"step": s, **(final if s == n else early)} for s in range(1, n + 1)]


def _records(root):
    records, problems = find_runs([root])
    assert not problems
    return records


# ---- ranking ---------------------------------------------------------------------------------


def test_ranking_uses_final_diagnostics_and_orients_metrics(tmp_path):
    # four methods; accuracy rises A→D, depth error falls A→D (so D is best at both)
    acc, err = [10.0, 20.0, 30.0, 40.0], [0.4, 0.3, 0.2, 0.1]
    gds, gms, fd = [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.1, 0.3, 0.2, 0.4]
    for i, method in enumerate(("ew", "mgda", "pcgrad", "uw")):
        final = {"diag/gds": gds[i], "diag/gms": gms[i], "diag/fd": fd[i]}
        early = {k: -v for k, v in final.items()}  # reversed order early on: must not count
        write_run(tmp_path, TrainConfig(benchmark="nyuv2", method=method), {"seg": {"acc": acc[i]},
                  "depth": {"abs_err": err[i]}}, steps=_steps(final, early))
    output = STUDIES["ranking"].analyse(_records(tmp_path))
    (table,) = output.tables
    by_task = {(r["task"], r["metric"]): r for r in table.data}
    for key in (("seg", "acc"), ("depth", "abs_err")):
        row = by_task[key]
        assert row["GDS_S"] == 1.0 and row["GDS_abs"] == 0.5
        assert row["GMS_S"] == 0.0 and row["GMS_abs"] == 0.5
        assert row["FD_S"] == pytest.approx(5 / 6) and row["FD_abs"] == pytest.approx(1 / 3)
    assert table.rows[-1] == ["mean over metrics", "0.50", "0.50", "0.33"]
    assert any("κ(J) left out" in w for w in output.warnings)  # diag/cond was not logged


def test_ranking_needs_three_methods(tmp_path):
    for method in ("ew", "mgda"):
        write_run(tmp_path, TrainConfig(benchmark="nyuv2", method=method), {"seg": {"acc": 1.0}},
                  steps=_steps({"diag/gds": 0.1}, {"diag/gds": 0.1}))
    output = STUDIES["ranking"].analyse(_records(tmp_path))
    assert not output.tables and any("ranking needs at least 3" in w for w in output.warnings)


# ---- surrogate -------------------------------------------------------------------------------


def test_surrogate_pairs_levels_and_signs_changes(tmp_path):
    metrics = {"parameters": {"seg": {"acc": 50.0}, "depth": {"abs_err": 0.5}},
               "representation": {"seg": {"acc": 55.0}, "depth": {"abs_err": 0.45}}}
    seconds = {"parameters": 2.0, "representation": 3.0}
    for seed in (0, 1):
        base = TrainConfig(benchmark="nyuv2", seed=seed, epochs=2)
        write_baselines(tmp_path, base, {"seg": {"acc": 50.0}, "depth": {"abs_err": 0.5}})
        for level in ("parameters", "representation"):
            config = TrainConfig(benchmark="nyuv2", method="mgda", level=level, seed=seed, epochs=2)
            write_run(tmp_path, config, metrics[level],
                      epochs=[{"epoch": e, "time/epoch_s": seconds[level]} for e in range(2)])
        write_run(tmp_path, TrainConfig(benchmark="nyuv2", method="pcgrad", seed=seed, epochs=2), metrics["parameters"])
    output = STUDIES["surrogate"].analyse(_records(tmp_path))
    (table,) = output.tables
    (row,) = table.data  # pcgrad ran at one level only: not a pair
    assert row["method"] == "mgda" and row["seeds"] == 2
    assert row["change_seg/acc"] == pytest.approx(10.0)
    assert row["change_depth/abs_err"] == pytest.approx(10.0)  # lower error: positive
    assert row["delta_p_task_par"] == pytest.approx(0.0) and row["delta_p_task_rep"] == pytest.approx(10.0)
    assert row["time_ratio"] == pytest.approx(1.5)


def test_gradient_methods_cover_both_levels():
    names = gradient_methods()
    assert {"mgda", "pcgrad", "cagrad", "nashmtl"} <= set(names)
    assert not {"ew", "avgnorm", "uw", "mgda-ub"} & set(names)


# ---- grid search -----------------------------------------------------------------------------


def test_gridsearch_chooses_on_validation_and_reports_avgnorm_weights(tmp_path):
    stl = {"left": {"acc": 50.0}, "right": {"acc": 50.0}}
    base = TrainConfig(benchmark="multidigits", epochs=2)
    write_baselines(tmp_path, base, stl)
    # [1, 2] is best on validation, [1, 0.5] on test: the grid's winner must be [1, 2]; [1, 3] is
    # AvgNorm's mean weight ratio (a follow-up run), not a grid point
    grid = {(1.0, 2.0): (60.0, 51.0), (1.0, 0.5): (52.0, 70.0), (1.0, 3.0): (80.0, 56.0)}
    for weights, (val, test) in grid.items():
        config = TrainConfig(benchmark="multidigits", method="fixed", method_args={"weights": list(weights)}, epochs=2,
                             name=f"fixed-{weights[1]}")
        write_run(tmp_path, config, {"left": {"acc": test}, "right": {"acc": test}},
                  extras={"val": {"left": {"acc": val}, "right": {"acc": val}}})
    avgnorm = TrainConfig(benchmark="multidigits", method="avgnorm", epochs=2)
    write_run(tmp_path, avgnorm, {"left": {"acc": 55.0}, "right": {"acc": 55.0}},
              steps=[{"step": s, "weight/left": w, "weight/right": 3 * w} for s, w in enumerate((0.5, 1.5), 1)])
    write_run(tmp_path, TrainConfig(benchmark="multidigits", method="uw", epochs=2),
              {"left": {"acc": 45.0}, "right": {"acc": 45.0}})
    output = STUDIES["gridsearch"].analyse(_records(tmp_path))
    (table,) = output.tables
    rows = {r["setting"]: r for r in table.data}
    best = next(r for r in table.data if r["kind"] == "grid best")
    assert best["weights"] == "1 2" and best["val_delta_p_task"] == pytest.approx(20.0)
    assert best["test_delta_p_task"] == pytest.approx(2.0)
    assert rows["avgnorm"]["weights"] == "1 3" and rows["avgnorm"]["test_delta_p_task"] == pytest.approx(10.0)
    (at_mean,) = [r for r in table.data if r["kind"] == "fixed at AvgNorm mean"]
    assert at_mean["weights"] == "1 3" and at_mean["test_delta_p_task"] == pytest.approx(12.0)
    assert rows["uw"]["kind"] == "dynamic" and rows["uw"]["test_delta_p_task"] == pytest.approx(-10.0)
    assert [r["kind"] for r in table.data] == ["grid best", "fixed at AvgNorm mean", "avgnorm", "dynamic", "grid"]
    followup = tmp_path / "follow.toml"
    followup.write_text(output.files["avgnorm-weights-multidigits.toml"])
    spec = load_sweep(followup)
    (config,) = spec.configs(tmp_path / "f")
    assert config.method == "fixed" and config.method_args == {"weights": [1.0, 3.0]} and config.epochs == 2
    assert not spec.baselines


def test_gridsearch_zero_baseline_gives_no_winner_and_a_warning(tmp_path):
    base = TrainConfig(benchmark="multidigits", epochs=2)
    write_baselines(tmp_path, base, {"left": {"acc": 0.0}, "right": {"acc": 50.0}})
    write_run(tmp_path, TrainConfig(benchmark="multidigits", method="fixed", method_args={"weights": [1, 1]},
                                    epochs=2), {"left": {"acc": 5.0}, "right": {"acc": 50.0}})
    output = STUDIES["gridsearch"].analyse(_records(tmp_path))
    (row,) = output.tables[0].data
    assert row["kind"] == "grid" and row["test_delta_p_task"] is None
    assert any("no grid winner" in w for w in output.warnings)
    assert any("is 0" in w for w in output.warnings)


# ---- writing and the command -----------------------------------------------------------------


def test_study_files_and_cli(tmp_path):
    for i, method in enumerate(("ew", "mgda", "pcgrad")):
        write_run(tmp_path / "runs", TrainConfig(benchmark="nyuv2", method=method), {"seg": {"acc": 10.0 * i}},
                  steps=_steps({"diag/gds": 0.1 * i}, {"diag/gds": 0.0}))
    written = write_study(get_study("ranking"), STUDIES["ranking"].analyse(_records(tmp_path / "runs")),
                          tmp_path / "out")
    names = {p.name for p in written}
    assert {"ranking.md", "ranking.csv", "ranking.png", "ranking.pdf"} <= names
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "ranking.csv").read_text())))
    assert float(rows[0]["GDS_abs"]) == 0.5 and math.isclose(float(rows[0]["GDS_S"]), 1.0)
    assert "](ranking.png)" in (tmp_path / "out" / "ranking.md").read_text()

    recipe = tmp_path / "r.toml"
    result = runner.invoke(app, ["study", "recipe", "ranking", "-b", "multidigits", "-o", str(recipe),
                                 "--epochs", "1", "--max-steps", "2"])
    assert result.exit_code == 0, result.output and load_sweep(recipe).train["max_steps"] == 2
    result = runner.invoke(app, ["study", "analyse", "ranking", str(tmp_path / "runs"), "--out",
                                 str(tmp_path / "cli"), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "ranking.md").exists() and not (tmp_path / "cli" / "ranking.png").exists()
    result = runner.invoke(app, ["study", "analyse", "nope", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "unknown study 'nope'" in result.output


# ---- data quality and quantity ---------------------------------------------------------------


def test_data_study_compares_each_condition_with_clean_data(tmp_path):
    conditions = {"clean": ({}, 50.0, 40.0), "noise": ({"noise_task": "left", "noise": 0.5}, 45.0, 30.0),
                  "half": ({"fraction": 0.5}, 48.0, 36.0)}
    for seed in (0, 1):
        for name, (options, mtl, stl) in conditions.items():
            config = TrainConfig(benchmark="perturbed-multidigits", method="ew", seed=seed, epochs=1,
                                 options=options, name=f"ew-{name}-seed{seed}")
            write_baselines(tmp_path, config, {"left": {"acc": stl}, "right": {"acc": 80.0}})
            write_run(tmp_path, config, {"left": {"acc": mtl + seed}, "right": {"acc": 80.0}})
    output = STUDIES["data"].analyse(_records(tmp_path))
    (table,) = output.tables
    rows = {r["condition"]: r for r in table.data}
    assert list(rows) == ["clean, all data", "0.5 of the training data", "noise on left (0.5)"]
    noisy = rows["noise on left (0.5)"]
    assert noisy["left_stl_change"] == pytest.approx(-25.0)  # 30 vs 40
    assert noisy["left_mtl_change"] == pytest.approx((45.5 - 50.5) / 50.5 * 100)  # means over seeds
    assert noisy["left_mtl_vs_stl"] == pytest.approx((45.5 - 30.0) / 30.0 * 100)
    assert noisy["right_stl_change"] == pytest.approx(0.0) and noisy["right_mtl_change"] == pytest.approx(0.0)
    assert rows["clean, all data"]["left_mtl_change"] == pytest.approx(0.0)


def test_data_recipe_adds_whole_scene_conditions_at_one_views_setting(tmp_path):
    from repmtl.experiments.studies.data import FRACTIONS, VIEWS

    path = tmp_path / "data.toml"
    path.write_text(STUDIES["data"].recipe(["multidigits", "synthscenes"], [0], TINY))
    sweep = load_sweep(path)
    options = {b.name: [] for b in sweep.benchmarks}
    for entry in sweep.benchmarks:
        options[entry.name].append(dict(entry.fields.get("options") or {}))
    scenes = options["perturbed-synthscenes"]
    assert all(o.get("views") == VIEWS for o in scenes)  # its own clean reference included
    assert {"views": VIEWS} in scenes
    assert sorted(o["scenes"] for o in scenes if "scenes" in o) == sorted(round(2048 / VIEWS * f) for f in FRACTIONS)
    assert not any("views" in o or "scenes" in o for o in options["perturbed-multidigits"])


def test_data_study_compares_whole_scenes_with_the_clean_run_at_the_same_views(tmp_path):
    conditions = {"clean": ({"views": 4}, 50.0), "scenes": ({"views": 4, "scenes": 256}, 40.0),
                  "half": ({"views": 4, "fraction": 0.5}, 45.0)}
    for name, (options, acc) in conditions.items():
        config = TrainConfig(benchmark="perturbed-synthscenes", method="ew", epochs=1, options=options,
                             name=f"ew-{name}")
        write_baselines(tmp_path, config, {"segmentation": {"miou": acc / 2}, "depth": {"abs_err": 0.5},
                                           "normal": {"mean": 30.0}})
        write_run(tmp_path, config, {"segmentation": {"miou": acc}, "depth": {"abs_err": 0.5},
                                     "normal": {"mean": 30.0}})
    output = STUDIES["data"].analyse(_records(tmp_path))
    (table,) = output.tables
    rows = {r["condition"]: r for r in table.data}
    assert table.title.startswith("perturbed-synthscenes (4 views per room)")  # stated once, not per row
    assert list(rows) == ["clean, all data", "0.5 of the training data", "256 whole scenes"]
    assert rows["256 whole scenes"]["segmentation_mtl_change"] == pytest.approx(-20.0)
    assert rows["0.5 of the training data"]["segmentation_stl_change"] == pytest.approx(-10.0)
    assert output.plot_data["panels"][0]["conditions"] == list(rows)[1:]
    assert not any("no clean" in w for w in output.warnings)
    # without the clean run at the same views, the change is n/a with a warning naming it
    for path in tmp_path.rglob("ew-clean*"):
        shutil.rmtree(path)
    output = STUDIES["data"].analyse(_records(tmp_path))
    assert any("no clean, full-data runs (clean, all data (4 views per room))" in w for w in output.warnings)
    assert all(r["segmentation_mtl_change"] is None for r in output.tables[0].data)


def test_perturbed_labels_are_fixed_noisy_and_only_in_training():
    import torch

    from repmtl.benchmarks import BuildOptions
    from repmtl.data import get_benchmark
    from repmtl.data.perturbed import corrupt

    clean = get_benchmark("multidigits").splits(BuildOptions())
    noisy = get_benchmark("perturbed-multidigits").splits(BuildOptions(extra={"noise_task": "left", "noise": 0.5,
                                                                              "fraction": 0.5}))
    assert len(noisy.train) == len(clean.train) // 2 and noisy.val is not None
    indices = noisy.train.indices[:400]
    changed = [int(noisy.train[i][1]["left"]) != int(clean.train[j][1]["left"]) for i, j in enumerate(indices)]
    assert 0.4 < sum(changed) / len(changed) < 0.6
    assert all(int(noisy.train[i][1]["right"]) == int(clean.train[j][1]["right"]) for i, j in enumerate(indices[:50]))
    assert [int(noisy.train[i][1]["left"]) for i in range(20)] == [int(noisy.train[i][1]["left"]) for i in range(20)]
    # segmentation: at most five present classes relabelled, each to another class; ignore stays
    rng = np.random.default_rng(0)
    seg = torch.arange(8).repeat_interleave(4).reshape(4, 8)
    seg[0, 0] = -1
    out = corrupt(seg, 1.0, 8, rng)
    moved = {int(c) for c in torch.unique(seg[out != seg])}
    assert 1 <= len(moved) <= 5 and out[0, 0] == -1 and not (out[seg == next(iter(moved))] == next(iter(moved))).any()
    with pytest.raises(ValueError, match="noise_task 'nope' is not a task"):
        get_benchmark("perturbed-multidigits").splits(BuildOptions(extra={"noise_task": "nope", "noise": 0.1}))


# ---- feature distance ------------------------------------------------------------------------


def test_adapted_distance_is_zero_for_a_linear_map_and_one_for_noise():
    import torch

    from repmtl.experiments.studies.distance import adapted_distance

    g = torch.Generator().manual_seed(0)
    source = torch.randn(64, 5, 3, 3, generator=g)
    mix = torch.randn(5, 4, generator=g)
    target = torch.einsum("nchw,cd->ndhw", source, mix) + 2.0
    assert adapted_distance(source[:48], target[:48], source[48:], target[48:]) < 1e-4
    noise = torch.randn(64, 4, 3, 3, generator=g)
    assert 0.9 < adapted_distance(source[:48], noise[:48], source[48:], noise[48:]) < 1.3
    with pytest.raises(ValueError, match="constant"):
        adapted_distance(source, torch.ones(64, 4, 3, 3), source, torch.ones(64, 4, 3, 3))


def _checkpoint(run_dir, config, encoder_from=None, seed=0):
    import torch

    from repmtl.benchmarks import BuildOptions
    from repmtl.data import get_benchmark

    bench = get_benchmark(config.benchmark)
    tasks = [t for t in bench.tasks(BuildOptions()) if not config.single_task or t.name == config.single_task]
    torch.manual_seed(seed)
    model = bench.model(BuildOptions(), tasks)
    if encoder_from is not None:
        model.encoder.load_state_dict(encoder_from.encoder.state_dict())
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    torch.save({"model": model.state_dict(), "epoch": 0}, run_dir / "checkpoints" / "best.pt")
    return model


def test_distance_study_reads_checkpoints(tmp_path, monkeypatch):
    from repmtl.experiments.studies import distance

    monkeypatch.setattr(distance, "FIT_SAMPLES", 96)
    monkeypatch.setattr(distance, "EVAL_SAMPLES", 48)
    from repmtl.train.trainer import single_task_config

    scores = {"left": {"acc": 50.0}, "right": {"acc": 50.0}}
    same = TrainConfig(benchmark="multidigits", method="ew", epochs=1)
    other = TrainConfig(benchmark="multidigits", method="mgda", epochs=1)
    stl_dirs = write_baselines(tmp_path, same, scores)
    model = _checkpoint(write_run(tmp_path, same, scores), same, seed=0)
    _checkpoint(write_run(tmp_path, other, scores), other, seed=1)
    for task, run_dir in stl_dirs.items():  # single-task encoders equal to EW's
        _checkpoint(run_dir, single_task_config(same, task), encoder_from=model)
    output = STUDIES["distance"].analyse(_records(tmp_path))
    rows = {r["setting"]: r for r in output.tables[0].data}
    assert rows["ew"]["distance_left"] < 1e-3 and rows["ew"]["distance_right"] < 1e-3
    assert rows["mgda"]["distance_left"] > 0.05


@pytest.mark.slow
def test_a_study_runs_end_to_end_from_its_recipe(tmp_path, monkeypatch):
    """recipe -> sweep -> analyse on real (tiny) training runs."""
    from repmtl.experiments.studies import ranking
    from repmtl.experiments.sweep import run_sweep

    monkeypatch.setattr(ranking, "METHODS", ("ew", "mgda", "pcgrad"))
    recipe = tmp_path / "ranking.toml"
    recipe.write_text(ranking.recipe(["multidigits"], [0], TINY))
    assert run_sweep(recipe, out=tmp_path / "sweep").ok
    output = STUDIES["ranking"].analyse(_records(tmp_path / "sweep"))
    bottom, top = output.tables  # multidigits, then attention-multidigits
    assert [r["methods"] for r in bottom.data + top.data] == [3, 3, 3, 3]
    assert all(0 <= r["GDS_abs"] <= 0.5 for r in bottom.data)
    assert all(0 <= r["FD top-down_abs"] <= 0.5 for r in top.data)
    written = write_study(get_study("ranking"), output, tmp_path / "study")
    assert {"ranking.md", "ranking.png"} <= {p.name for p in written}
