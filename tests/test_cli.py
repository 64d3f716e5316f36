import importlib.util

from typer.testing import CliRunner

from repmtl.cli import app

runner = CliRunner()


def test_methods_lists_every_method_with_its_needs():
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0
    for name in ("ew", "mgda", "pcgrad", "avgnorm", "uw", "dwa"):
        assert name in result.stdout
    assert "gramian" in result.stdout


def test_benchmarks_lists_multidigits():
    result = runner.invoke(app, ["benchmarks"])
    assert result.exit_code == 0 and "multidigits" in result.stdout


def test_train_smoke_prints_table(tmp_path):
    args = ["train", "--out", str(tmp_path), "--epochs", "1", "--max-steps", "2", "--no-progress",
            "--method", "mgda", "--method-arg", "normalization=l2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Δp_task" in result.stdout and "mgda-normalization=l2-seed0" in result.stdout
    assert (tmp_path / "multidigits" / "mgda-normalization=l2-seed0" / "results.json").exists()


def test_single_task_run(tmp_path):
    result = runner.invoke(app, ["train", "--out", str(tmp_path), "--epochs", "1", "--max-steps", "2",
                                 "--no-progress", "--single-task", "left"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "multidigits" / "stl-left-seed0" / "results.json").exists()


def test_unknown_method_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["train", "--out", str(tmp_path), "--method", "nope"])
    assert result.exit_code == 2
    assert "unknown method 'nope'" in result.output and "mgda" in result.output


def test_bad_method_arg_syntax(tmp_path):
    result = runner.invoke(app, ["train", "--out", str(tmp_path), "--method-arg", "novalue"])
    assert result.exit_code == 2 and "key=value" in result.output


def test_report_writes_plots(tmp_path):
    args = ["train", "--out", str(tmp_path), "--epochs", "2", "--max-steps", "4", "--no-progress",
            "--no-baseline", "--diagnostics", "every=2,level=representation", "--log-every", "2"]
    assert runner.invoke(app, args).exit_code == 0
    run = tmp_path / "multidigits" / "ew-seed0"
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    pngs = {p.name for p in (run / "report").glob("*.png")}
    assert {"geometry.png", "losses.png", "alpha_layers.png"} <= pngs
    assert "geometry.png" in (run / "report" / "report.md").read_text()


def test_report_on_a_folder_without_logs(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no run logs" in result.output


def test_bad_diagnostics_spec(tmp_path):
    result = runner.invoke(app, ["train", "--out", str(tmp_path), "--diagnostics", "often"])
    assert result.exit_code == 2 and "every=N" in result.output


def test_compare_lists_runs_side_by_side(tmp_path):
    base = ["train", "--out", str(tmp_path), "--epochs", "1", "--max-steps", "2", "--no-progress"]
    assert runner.invoke(app, base).exit_code == 0
    assert runner.invoke(app, base + ["--method", "gls"]).exit_code == 0
    runs = [str(tmp_path / "multidigits" / name) for name in ("ew-seed0", "gls-seed0")]
    result = runner.invoke(app, ["compare", *runs])
    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1].strip() for line in result.stdout.splitlines() if line.count("│") > 2]
    assert {"STL", "ew", "gls"} <= set(rows), result.stdout
    assert result.stdout.count("Δp_task") == 1  # one column, not one table per run


def test_compare_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    base = ["train", "--out", str(tmp_path), "--epochs", "1", "--max-steps", "2", "--no-progress"]
    assert runner.invoke(app, base).exit_code == 0
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = runner.invoke(app, ["compare", str(tmp_path / "multidigits" / "ew-seed0"), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "pip install 'repmtl[plots]'" in result.output  # rich markup must not eat "[plots]"


def test_sweep_help_names_the_cluster_extra():
    result = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"})
    assert "[cluster] extra" in result.output


def test_compare_refuses_unfinished_runs(tmp_path):
    result = runner.invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 2 and "results.json" in result.output


def test_bad_method_settings_fail_before_any_baseline_is_trained(tmp_path):
    for args in (["--method", "mgda", "--level", "pixels"], ["--regularizer", "nope"],
                 ["--method", "mgda", "--method-arg", "bogus=1"]):
        result = runner.invoke(app, ["train", "--out", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
    assert not (tmp_path / "multidigits").exists()
