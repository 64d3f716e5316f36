"""Aggregation maths on fake run folders: mean ± std over seeds, Δp per seed then averaged,
bolding at printed precision, n/a for zero or missing baselines, published rows."""

import csv
import io
import json
import math
from pathlib import Path

import pytest

from repmtl.experiments.aggregate import Stat, summarize
from repmtl.experiments.published import load_published
from repmtl.experiments.runs import find_runs
from repmtl.experiments.tables import csv_text, latex, markdown, rich_tables
from repmtl.train.config import TrainConfig

from ._fake_runs import write_baselines, write_run

BENCH = "nyuv2"


def _config(method="ew", seed=0, **kw):
    return TrainConfig(benchmark=BENCH, method=method, seed=seed, epochs=3, max_steps=5, **kw)


def _write_pair(root, method="ew", **kw):
    """Two seeds of one method with hand-checkable numbers (see the test below)."""
    base = {0: {"seg": {"miou": 40.0, "acc": 60.0}, "depth": {"abs_err": 0.5}},
            1: {"seg": {"miou": 40.0, "acc": 50.0}, "depth": {"abs_err": 0.6}}}
    runs = {0: {"seg": {"miou": 44.0, "acc": 60.0}, "depth": {"abs_err": 0.45}},
            1: {"seg": {"miou": 38.0, "acc": 50.0}, "depth": {"abs_err": 0.66}}}
    for seed in (0, 1):
        config = _config(method, seed, **kw)
        write_baselines(root, config, base[seed])
        write_run(root, config, runs[seed])


def _only(root, **published):
    records, problems = find_runs([root])
    assert not problems
    (comparison,) = summarize(records, **published)
    return comparison


def test_stat_is_mean_and_sample_std():
    stat = Stat.of([1.0, 2.0, 6.0])
    assert stat.mean == pytest.approx(3.0)
    assert stat.std == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2))
    assert Stat.of([5.0]).std is None


def test_metrics_and_delta_p_over_seeds(tmp_path):
    _write_pair(tmp_path)
    comparison = _only(tmp_path)
    (ew,) = comparison.settings
    assert ew.label == "ew" and ew.seeds == [0, 1]
    assert ew.metrics["seg"]["miou"].mean == pytest.approx(41.0)
    assert ew.metrics["seg"]["miou"].std == pytest.approx(math.sqrt(2 * 3.0**2))
    assert ew.metrics["depth"]["abs_err"].mean == pytest.approx(0.555)
    # seed 0: miou +10 %, acc 0 %, abs_err (lower is better) +10 %
    #   Δp_task = mean(mean(10, 0), 10) = 7.5; Δp_metric = mean(10, 0, 10) = 20/3
    # seed 1: miou -5 %, acc 0 %, abs_err -10 %
    #   Δp_task = mean(-2.5, -10) = -6.25; Δp_metric = -5
    assert ew.delta_task.mean == pytest.approx((7.5 - 6.25) / 2)
    assert ew.delta_task.std == pytest.approx(math.sqrt(2 * ((7.5 + 6.25) / 2) ** 2))
    assert ew.delta_metric.mean == pytest.approx((20 / 3 - 5) / 2)
    assert ew.delta_m.mean == pytest.approx(-ew.delta_metric.mean)
    assert ew.per_task["seg"].mean == pytest.approx((5 - 2.5) / 2)
    assert ew.per_task["depth"].mean == pytest.approx(0.0)
    (stl,) = comparison.baselines
    assert stl.metrics["seg"]["acc"].mean == pytest.approx(55.0)
    assert stl.metrics["depth"]["abs_err"].std == pytest.approx(math.sqrt(2 * 0.05**2))
    assert not comparison.warnings


def test_settings_group_by_configuration_not_folder_name(tmp_path):
    write_baselines(tmp_path, _config(), {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}})
    for name, miou in (("a", 42.0), ("b", 44.0)):
        write_run(tmp_path, _config(name=name), {"seg": {"miou": miou}, "depth": {"abs_err": 0.5}})
    for weights, name in (([1.0, 2.0], "x"), ([2.0, 1.0], "y")):
        write_run(tmp_path, _config("fixed", method_args={"weights": weights}, name=name),
                  {"seg": {"miou": 41.0}, "depth": {"abs_err": 0.5}})
    comparison = _only(tmp_path)
    labels = [s.label for s in comparison.settings]
    assert labels == ["ew", "fixed weights=[1,2]", "fixed weights=[2,1]"]
    # two folders of the same configuration and seed: one is used, with a warning
    assert comparison.settings[0].metrics["seg"]["miou"].n == 1
    assert any("several folders" in w for w in comparison.warnings)


def test_preset_rows_are_named_after_the_preset(tmp_path):
    config = _config("ew", regularizer="repmtl", loss_transform="log")
    write_baselines(tmp_path, config, {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}})
    write_run(tmp_path, config, {"seg": {"miou": 42.0}, "depth": {"abs_err": 0.5}})
    write_run(tmp_path, _config("pcgrad"), {"seg": {"miou": 41.0}, "depth": {"abs_err": 0.5}})
    labels = [s.label for s in _only(tmp_path).settings]
    assert labels == ["pcgrad", "repmtl"]  # loss_transform is the preset's, not a varying field


def test_best_is_bold_per_column_with_direction_and_ties(tmp_path):
    write_baselines(tmp_path, _config(), {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}})
    rows = {"ew": (42.0, 0.40), "pcgrad": (45.0, 0.45), "mgda": (45.001, 0.41)}
    for method, (miou, err) in rows.items():
        write_run(tmp_path, _config(method), {"seg": {"miou": miou}, "depth": {"abs_err": err}})
    comparison = _only(tmp_path)
    labels = [s.label for s in comparison.settings]
    by_key = {c.key: c for c in comparison.columns}
    # 45.00 and 45.001 print alike at 2 decimals: both best; lower abs_err is better
    assert {labels[i] for i in comparison.best(by_key["seg/miou"])} == {"pcgrad", "mgda"}
    assert {labels[i] for i in comparison.best(by_key["depth/abs_err"])} == {"ew"}
    text = markdown([comparison])
    assert "| ew | 1 | 42.00 | **0.4000** |" in text
    assert "| mgda | 1 | **45.00** | 0.4100 |" in text


def test_zero_baseline_gives_na_and_a_warning(tmp_path):
    config = _config()
    write_baselines(tmp_path, config, {"seg": {"miou": 0.0}, "depth": {"abs_err": 0.5}})
    write_run(tmp_path, config, {"seg": {"miou": 3.0}, "depth": {"abs_err": 0.4}})
    comparison = _only(tmp_path)
    (row,) = comparison.settings
    assert row.delta_task is None and row.delta_metric is None and not row.per_task
    assert any("seg/miou is 0" in w and "n/a" in w for w in comparison.warnings)
    table = markdown([comparison])
    assert table.count("n/a") >= 2 and "seg/miou is 0" in table


def test_one_seed_without_baseline_makes_delta_p_na(tmp_path):
    write_baselines(tmp_path, _config(seed=0), {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}})
    for seed in (0, 1):
        write_run(tmp_path, _config(seed=seed), {"seg": {"miou": 44.0}, "depth": {"abs_err": 0.5}})
    comparison = _only(tmp_path)
    assert comparison.settings[0].delta_task is None
    assert any("seed 1" in w and "no finished single-task baseline" in w for w in comparison.warnings)


def test_baselines_listed_in_results_are_preferred(tmp_path):
    config = _config()
    write_baselines(tmp_path, config, {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}})
    other = tmp_path / "elsewhere"
    listed = write_baselines(other, _config(lr=0.1), {"seg": {"miou": 20.0}, "depth": {"abs_err": 0.5}})
    run = write_run(tmp_path, config, {"seg": {"miou": 44.0}, "depth": {"abs_err": 0.5}},
                    extras={"baselines": {t: str(p) for t, p in listed.items()}})
    records, _ = find_runs([run])
    (comparison,) = summarize(records)
    assert comparison.settings[0].delta_task.mean == pytest.approx(((44 - 20) / 20 * 100 + 0) / 2)


def test_two_budgets_give_two_stl_rows(tmp_path):
    for lr in (1e-3, 1e-4):
        config = _config(lr=lr, name=f"ew-lr{lr}")
        write_baselines(tmp_path, config, {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}})
        write_run(tmp_path, config, {"seg": {"miou": 44.0}, "depth": {"abs_err": 0.5}})
    comparison = _only(tmp_path)
    assert sorted(r.label for r in comparison.baselines) == ["STL lr=0.0001", "STL lr=0.001"]
    assert sorted(s.label for s in comparison.settings) == ["ew lr=0.0001", "ew lr=0.001"]


def test_torn_results_are_reported_not_fatal(tmp_path):
    _write_pair(tmp_path)
    torn = tmp_path / BENCH / "pcgrad-seed0"
    torn.mkdir()
    (torn / "results.json").write_text('{"config": {"benchmark"')
    records, problems = find_runs([tmp_path])
    assert len(problems) == 1 and "pcgrad-seed0" in problems[0] and "not valid JSON" in problems[0]
    assert len(summarize(records)[0].settings) == 1


def test_published_rows_and_delta_m_column(tmp_path):
    _write_pair(tmp_path)
    path = tmp_path / "published.toml"
    path.write_text(f"""
[[result]]
benchmark = "{BENCH}"
method = "EW"
source = "A. Author et al., Venue 2099, Table 1"
metrics = {{ "seg/miou" = 39.5, "depth/abs_err" = 0.55, "normal/mean" = 25.0 }}
delta_m = 1.25
""")
    comparison = _only(tmp_path, published=load_published(path))
    assert [c.key for c in comparison.columns][-1] == "delta_m"
    assert any("normal/mean" in w for w in comparison.warnings)
    text = markdown([comparison])
    assert "*EW (published [1])*" in text and "39.50" in text and "+1.25" in text
    assert "A. Author et al., Venue 2099, Table 1" in text
    assert r"\textit{EW} [1]" in latex([comparison])


def _published_ranking(tmp_path, rows: dict[str, tuple[str, float]]) -> Path:
    path = tmp_path / "ranking.toml"
    path.write_text("".join(f"""
[[result]]
benchmark = "qm9"
shown_for = ["{BENCH}"]
method = "{label}"
ours = {ours}
source = "A. Author et al., Venue 2099, Table 2"
delta_m = {value}
""" for label, (ours, value) in rows.items()))
    return path


def test_rank_agreement_pairs_named_rows_and_ranks_by_delta_m(tmp_path):
    # our Δm: ew −(Δp_metric); pcgrad better than ew, mgda worse (hand-set seg/depth numbers)
    base = {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}}
    ours = {"ew": (44.0, 0.5), "pcgrad": (48.0, 0.45), "mgda": (40.0, 0.6), "uw": (42.0, 0.5)}
    for method, (miou, err) in ours.items():
        config = _config(method, 0, loss_transform="none")  # as the trainer records it: resolved
        write_baselines(tmp_path, config, base)
        write_run(tmp_path, config, {"seg": {"miou": miou}, "depth": {"abs_err": err}})
    # ew+log is a second EW row: the published SI names it, LS names plain EW only
    config = _config("ew", 0, loss_transform="log", name="ew-log-seed0")
    write_run(tmp_path, config, {"seg": {"miou": 30.0}, "depth": {"abs_err": 0.9}})
    same_order = {"LS": ('{ method = "ew", loss_transform = "none" }', 10.0), "PCGrad": ('"pcgrad"', 5.0),
                  "MGDA": ('"mgda"', 20.0), "UW": ('"uw"', 12.0), "SI": ('{ method = "ew", loss_transform = "log" }', 30.0),
                  "RLW": ('"rlw"', 1.0)}  # no RLW run of ours: not paired
    comparison = _only(tmp_path, published=load_published(_published_ranking(tmp_path, same_order)))
    agreement = comparison.agreement
    assert agreement is not None and agreement.key == "delta_m" and len(agreement.pairs) == 5
    assert agreement.spearman == pytest.approx(1.0) and agreement.kendall == pytest.approx(1.0)
    assert "Spearman ρ = +1.00" in markdown([comparison]) and len(comparison.published) == 6
    # reverse two of them: one discordant pair of 10 → τ = (9 − 1) / 10, ρ = 1 − 6·2/(5·24)
    swapped = {**same_order, "PCGrad": ('"pcgrad"', 10.5)}
    comparison = _only(tmp_path, published=load_published(_published_ranking(tmp_path, swapped)))
    assert comparison.agreement.kendall == pytest.approx(0.8)
    assert comparison.agreement.spearman == pytest.approx(0.9)
    # a name that matches two of our rows is left out with a warning; too few pairs: no agreement
    ambiguous = {"EW": ('"ew"', 1.0), "MGDA": ('"mgda"', 2.0), "UW": ('"uw"', 3.0)}
    comparison = _only(tmp_path, published=load_published(_published_ranking(tmp_path, ambiguous)))
    assert comparison.agreement is None
    assert any("published EW matches 2 of our rows" in w for w in comparison.warnings)
    assert any("2 of our rows pair" in w for w in comparison.warnings)


def test_published_ours_and_shown_for_are_checked(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[result]]\nbenchmark = "x"\nmethod = "EW"\nsource = "s"\nours = { level = "parameters" }\n')
    with pytest.raises(ValueError, match=r"result #1: `ours` must be a method name or a table"):
        load_published(path)
    path.write_text('[[result]]\nbenchmark = "x"\nmethod = "EW"\nsource = "s"\nshown_for = "y"\n')
    with pytest.raises(ValueError, match=r"result #1: `shown_for` must be a list"):
        load_published(path)


def test_published_file_errors_name_the_entry(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[result]]\nbenchmark = "x"\nmethod = "EW"\nsource = "s"\nmetrics = { "a/b" = "high" }\n')
    with pytest.raises(ValueError, match=r"result #1, metrics.a/b must be a finite number"):
        load_published(path)


def test_csv_and_latex_carry_the_same_numbers(tmp_path):
    _write_pair(tmp_path)
    comparison = _only(tmp_path)
    rows = list(csv.DictReader(io.StringIO(csv_text([comparison]))))
    assert [r["kind"] for r in rows] == ["stl", "ours"]
    ours = rows[1]
    assert float(ours["seg/miou"]) == pytest.approx(41.0)
    assert float(ours["delta_p_task"]) == pytest.approx(0.625)
    assert rows[0]["delta_p_task"] == ""
    tex = latex([comparison])
    assert r"\textbf" not in tex  # one setting: nothing to rank
    assert r"41.00$\pm$4.24" in tex and r"abs\_err" in tex and r"\toprule" in tex
    assert any("41.00 ± 4.24" in str(cell) for cell in rich_tables([comparison])[0].columns[2].cells)


def test_different_task_sets_in_one_benchmark_are_refused(tmp_path):
    write_run(tmp_path, _config(), {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}})
    write_run(tmp_path, _config("pcgrad"), {"seg": {"miou": 40.0}})
    records, _ = find_runs([tmp_path])
    with pytest.raises(ValueError, match="different tasks"):
        summarize(records)


def test_results_json_with_a_foreign_config_is_reported(tmp_path):
    run = tmp_path / "odd"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"config": {"colour": "red"}, "tasks": [], "best_epoch": 0,
                                                  "test": {}, "lower_is_better": {}}))
    _, problems = find_runs([tmp_path])
    assert problems and "not a training configuration" in problems[0]


def test_rows_are_labelled_by_architecture(tmp_path):
    """`repmtl compare` names a non-hard-sharing run after its architecture (and its arguments);
    hard sharing, and a run folder written before architectures existed, keep the method's name."""
    test = {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}}
    write_baselines(tmp_path, _config("ew"), test)
    write_run(tmp_path, _config("ew"), test)
    write_run(tmp_path, _config("ew", architecture="mtan"), test)
    write_run(tmp_path, _config("mgda", architecture="mmoe", architecture_args={"experts": 4}), test)
    legacy = write_run(tmp_path, _config("pcgrad"), test)
    config = json.loads((legacy / "config.json").read_text())
    del config["architecture"], config["architecture_args"]
    (legacy / "config.json").write_text(json.dumps(config))
    labels = sorted(s.label for s in _only(tmp_path).settings)
    assert labels == ["ew", "mmoe experts=4 mgda", "mtan ew", "pcgrad"]
