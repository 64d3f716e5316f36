"""The top-down ranking study (attention heads), whole-scene training subsets, and the distance
study's use of the trainer's builder: fake run folders with hand-checkable numbers, and tiny
real runs where the trainer itself is what is tested."""

import json
import math

import numpy as np
import pytest
import torch

from repmtl import logkeys as K
from repmtl.benchmarks import BuildOptions, register_benchmark, registered
from repmtl.data import get_benchmark
from repmtl.data.attention import attention_variant
from repmtl.data.perturbed import perturbed, whole_scenes
from repmtl.data.synthscenes import SynthScenes, generate
from repmtl.diagnostics import feature_disentanglement, step_diagnostics
from repmtl.experiments.runs import find_runs
from repmtl.experiments.studies import STUDIES, Budget
from repmtl.nets.attention import AttentionHead
from repmtl.step import BackwardRecord
from repmtl.train import TrainConfig, train
from repmtl.train.resolve import resolve

from .. import _tiny  # noqa: F401  (registers the tiny benchmarks)
from ._fake_runs import write_baselines, write_run

if "attention-tiny" not in registered():
    register_benchmark(attention_variant(registered()["tiny"]))


def _records(root):
    records, problems = find_runs([root])
    assert not problems
    return records


def _steps(final: dict[str, float], n: int = 10) -> list[dict]:
    early = {k: -v for k, v in final.items()}  # the reverse order early on: must not count
    return [{"step": s, **(final if s == n else early)} for s in range(1, n + 1)]


# ---- ranking: bottom-up and top-down -----------------------------------------------------------


def test_ranking_reports_bottom_up_and_top_down_tables(tmp_path):
    acc, err = [10.0, 20.0, 30.0, 40.0], [0.4, 0.3, 0.2, 0.1]  # D best at both tasks
    gds, fd, fd_top = [0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.2, 0.4], [0.4, 0.3, 0.2, 0.1]
    for i, method in enumerate(("ew", "mgda", "pcgrad", "uw")):
        test = {"seg": {"acc": acc[i]}, "depth": {"abs_err": err[i]}}
        write_run(tmp_path, TrainConfig(benchmark="nyuv2", method=method), test,
                  steps=_steps({K.DIAG_GDS.key(): gds[i], K.DIAG_FD.key(): fd[i]}))
        # top-down runs: their own (attention-augmented) network, so their own bottom-up values too
        write_run(tmp_path, TrainConfig(benchmark="attention-nyuv2", method=method), test,
                  steps=_steps({K.DIAG_GDS.key(): -gds[i], K.DIAG_FD.key(): fd[i],
                                K.DIAG_FD_ATTENTION.key(): fd_top[i]}))
    output = STUDIES["ranking"].analyse(_records(tmp_path))
    tables = {t.title: t for t in output.tables}
    bottom = tables["nyuv2: |S − 0.5| per task metric and diagnostic, bottom-up"]
    top = tables["attention-nyuv2: |S − 0.5| per task metric and diagnostic, top-down (attention heads)"]
    assert bottom.header == ["task metric", "GDS", "FD"]  # no top-down FD without attention heads
    assert top.header == ["task metric", "GDS", "FD", "FD top-down"]
    for row in top.data:
        assert row["variant"] == "top-down (attention heads)"
        assert row["FD top-down_S"] == 0.0 and row["FD top-down_abs"] == 0.5  # exactly reversed
        assert row["GDS_S"] == 0.0 and row["FD_S"] == pytest.approx(5 / 6)
    assert all(r["GDS_S"] == 1.0 for r in bottom.data)
    assert top.rows[-1] == ["mean over metrics", "0.50", "0.33", "0.50"]
    assert [p["variant"] for p in output.plot_data["panels"]] == ["bottom-up", "top-down (attention heads)"]


def test_ranking_recipe_adds_the_attention_twin_of_single_input_benchmarks():
    text = STUDIES["ranking"].recipe(["multidigits", "office31"], [0], Budget(epochs=1, max_steps=2))
    assert 'benchmarks = ["multidigits", "attention-multidigits", "office31"]' in text


# ---- the top-down diagnostic in training -------------------------------------------------------


def test_step_diagnostics_take_the_attention_maps():
    maps = {"a": torch.rand(4, 6), "b": torch.rand(4, 6)}
    record = BackwardRecord(tasks=("a", "b"), losses=torch.ones(2), weights=None, head_weights=torch.ones(2),
                            level="parameters")
    out = step_diagnostics(record, attention=maps)
    assert torch.equal(out[K.DIAG_FD_ATTENTION.key()], feature_disentanglement([maps["a"], maps["b"]]))
    assert K.DIAG_FD_ATTENTION.key() not in step_diagnostics(record, attention=maps, multi_input=True)
    with pytest.raises(ValueError, match=r"not for tasks \['b'\]"):
        step_diagnostics(record, attention={"a": maps["a"]})


def test_an_attention_benchmark_trains_and_logs_the_top_down_fd(tmp_path):
    bench = get_benchmark("attention-tiny")
    torch.manual_seed(0)
    base = registered()["tiny"].model(BuildOptions(), registered()["tiny"].tasks(BuildOptions()))
    torch.manual_seed(0)
    model = bench.model(BuildOptions(), bench.tasks(BuildOptions()))
    assert all(isinstance(h, AttentionHead) and h.attention.channels == 6 for h in model.heads.values())
    assert torch.equal(model.encoder[0].weight, base.encoder[0].weight)  # the base network, then the modules
    train(TrainConfig(benchmark="attention-tiny", out=str(tmp_path), name="r", epochs=1, diagnostics_every=1,
                      diagnostics_level="representation", progress=False))
    rows = [json.loads(line) for line in (tmp_path / "attention-tiny" / "r" / "steps.jsonl").read_text().splitlines()]
    values = [r[K.DIAG_FD_ATTENTION.key()] for r in rows]
    assert len(values) == len(rows) >= 3 and all(0 < v <= math.log(2) for v in values)
    assert {K.DIAG_FD.key(), K.DIAG_GDS.key()} <= set(rows[0])


def test_multi_input_benchmarks_get_no_attention_variant():
    with pytest.raises(ValueError, match="multi-input"):
        attention_variant(registered()["tiny-multi"])
    assert "attention-office31" not in registered()


# ---- whole-scene subsets -----------------------------------------------------------------------


def test_synthscenes_views_show_one_room_from_several_cameras():
    single = generate(0, "train", 3, (24, 32))
    first, second = generate(0, "train", 6, (24, 32), views=2), generate(0, "train", 7, (24, 32), views=2)
    assert np.array_equal(first["image"], single["image"])  # view 0 of scene 3 is sample 3 of views=1
    assert not np.array_equal(first["depth"], second["depth"])  # another camera
    assert np.array_equal(second["image"], generate(0, "train", 7, (24, 32), views=2)["image"])  # deterministic
    assert SynthScenes("train", 10, views=4, cache=False).scene_ids() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="views"):
        SynthScenes("train", 10, views=0)


def test_whole_scene_subsets_keep_every_view_of_the_scenes_drawn():
    data = SynthScenes("train", 40, views=4, cache=False)  # 10 scenes
    subset = whole_scenes(data, 3, seed=0, benchmark="synthscenes")
    scenes = [i // 4 for i in subset.indices]
    assert len(subset) == 12 and len(set(scenes)) == 3
    assert all(scenes.count(s) == 4 for s in set(scenes))  # whole scenes: all four views of each
    assert subset.indices == sorted(subset.indices)
    assert whole_scenes(data, 3, seed=0, benchmark="s").indices == subset.indices  # deterministic
    other = whole_scenes(data, 3, seed=1, benchmark="s").indices
    assert other != subset.indices
    rest = whole_scenes(data, 10, seed=0, benchmark="s")
    assert len(rest) == 40
    with pytest.raises(ValueError, match=r"1\.\.10"):
        whole_scenes(data, 11, seed=0, benchmark="synthscenes")


def test_the_scenes_option_of_perturbed_benchmarks():
    bench = get_benchmark("perturbed-synthscenes")
    extra = {"views": 4, "n_train": 32, "n_val": 4, "n_test": 4}
    train_half = bench.splits(BuildOptions(extra={**extra, "scenes": 4})).train
    assert len(train_half) == 16 and len({i // 4 for i in train_half.indices}) == 4
    assert len(bench.splits(BuildOptions(extra={**extra, "scenes": "2"})).train) == 8  # from --option
    with pytest.raises(ValueError, match="give one of them"):
        bench.splits(BuildOptions(extra={**extra, "scenes": 4, "fraction": 0.5}))
    with pytest.raises(ValueError, match="do not say which scene"):
        get_benchmark("perturbed-multidigits").splits(BuildOptions(extra={"scenes": 2}))
    with pytest.raises(ValueError, match="single-input"):
        perturbed(registered()["tiny-multi"]).splits(BuildOptions(extra={"scenes": 1}))


# ---- distance: the networks come from build_run ------------------------------------------------


def test_distance_builds_every_network_with_build_run(tmp_path, monkeypatch):
    from repmtl.experiments.studies import distance
    from repmtl.train.trainer import single_task_config

    monkeypatch.setattr(distance, "FIT_SAMPLES", 24)
    monkeypatch.setattr(distance, "EVAL_SAMPLES", 16)
    built = []

    def spy(config):
        built.append(config)
        return real(config)

    real = distance.build_run
    monkeypatch.setattr(distance, "build_run", spy)
    scores = {"a": {"acc": 50.0}, "b": {"acc": 50.0}}
    config = TrainConfig(benchmark="attention-tiny", method="ew", epochs=1)
    stl_dirs = write_baselines(tmp_path, config, scores)
    run_dir = write_run(tmp_path, config, scores)
    for directory, cfg in [(run_dir, config), *((d, single_task_config(config, t)) for t, d in stl_dirs.items())]:
        run = real(resolve(cfg))  # the network as the run built it: attention heads, one head for a baseline
        (directory / "checkpoints").mkdir()
        torch.save({"model": run.model.state_dict()}, directory / "checkpoints" / "best.pt")
    output = STUDIES["distance"].analyse(_records(tmp_path))
    assert sorted((c.single_task or "") for c in built) == ["", "a", "b"]
    assert all(c.device == "cpu" for c in built)
    (row,) = [r for r in output.tables[0].data if r["setting"] == "ew"]
    assert 0 <= row["distance_a"] < 1.5 and 0 <= row["distance_b"] < 1.5
