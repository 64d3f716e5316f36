"""Figures of a comparison, from fake run folders with diagnostics logs."""

import math

import numpy as np

from repmtl.experiments.aggregate import summarize
from repmtl.experiments.compare import write_comparison
from repmtl.experiments.plots import _curve, plot_comparison
from repmtl.experiments.runs import find_runs
from repmtl.train.config import TrainConfig

from ._fake_runs import write_baselines, write_run

TASKS3 = {"seg": {"miou": 40.0}, "depth": {"abs_err": 0.5}, "normal": {"mean": 25.0}}


def _logs(seed: int, shift: float, tasks, steps: int = 12):
    rng = np.random.default_rng(seed)
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "epoch": (step - 1) // 4, "diag/level": "representation",
               "diag/gds": 0.2 - 0.01 * step + shift + 0.01 * rng.standard_normal(),
               "diag/gms": 0.9 - shift, "diag/fd": 1.0 + 0.02 * step}
        for i, task in enumerate(tasks):
            row[f"diag/cos/{task}"] = 0.5 + 0.1 * i - shift
            row[f"diag/norm/{task}"] = 10.0 ** (i - 1) * (1 + 0.05 * step)
        rows.append(row)
    epochs = [{"epoch": e, "step": 4 * (e + 1), "alpha/encoder_mean": 3.0 + shift + e,
               **{f"alpha/head_mean/{t}": 2.5 + 0.2 * i for i, t in enumerate(tasks)}} for e in range(3)]
    return rows, epochs


def _write(root, tasks, methods=("ew", "pcgrad", "mgda"), logs=True):
    for seed in (0, 1):
        base = TrainConfig(benchmark="synthscenes", seed=seed, epochs=3)
        write_baselines(root, base, tasks)
        for j, method in enumerate(methods):
            test = {t: {m: v * (1 + 0.03 * (j - 1) * (1 if i % 2 else -1)) for m, v in ms.items()}
                    for i, (t, ms) in enumerate(tasks.items())}
            steps, epochs = _logs(seed, 0.1 * j, list(tasks))
            write_run(root, TrainConfig(benchmark="synthscenes", method=method, seed=seed, epochs=3), test,
                      steps=steps if logs else None, epochs=epochs if logs else None)
    records, _ = find_runs([root])
    (comparison,) = summarize(records)
    return comparison


def test_every_figure_is_written_as_png_and_pdf_and_linked(tmp_path):
    comparison = _write(tmp_path / "runs", TASKS3)
    written = write_comparison([comparison], tmp_path / "out")
    markdown = (tmp_path / "out" / "compare.md").read_text()
    for name in ("improvement", "alpha", "geometry", "cos_to_update", "grad_norms"):
        png, pdf = (tmp_path / "out" / "plots" / "synthscenes" / f"{name}.{ext}" for ext in ("png", "pdf"))
        assert png in written and pdf in written
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
        assert f"](plots/synthscenes/{name}.png)" in markdown
    assert "Not plotted" not in markdown
    assert "three or more tasks" not in markdown  # three tasks: a radar chart


def test_two_tasks_get_bars_and_missing_logs_are_skipped_with_the_reason(tmp_path):
    comparison = _write(tmp_path / "runs", {"left": {"acc": 90.0}, "right": {"acc": 80.0}}, logs=False)
    figures, skipped = plot_comparison(comparison, tmp_path / "plots")
    assert [f.name for f in figures] == ["improvement"]
    assert "three or more tasks" in figures[0].caption
    assert len(skipped) == 4 and all("diagnostics" in s for s in skipped)


def test_curves_average_seeds_at_common_steps(tmp_path):
    comparison = _write(tmp_path / "runs", TASKS3, methods=("ew",))
    (setting,) = comparison.settings
    curve = _curve(setting, "diag/gms", {})
    assert curve.seeds == 2 and curve.x.tolist() == list(range(1, 13))
    assert np.allclose(curve.mean, 0.9) and np.allclose(curve.std, 0.0)
    fd = _curve(setting, "diag/fd", {})
    assert math.isclose(fd.mean[0], 1.02)


def test_without_matplotlib_the_tables_are_still_written(tmp_path, monkeypatch):
    import sys

    comparison = _write(tmp_path / "runs", TASKS3, methods=("ew",), logs=False)
    for module in ("matplotlib", "repmtl.experiments.plots", "repmtl.experiments.figstyle"):
        monkeypatch.setitem(sys.modules, module, None) if module == "matplotlib" else \
            monkeypatch.delitem(sys.modules, module, raising=False)
    written = write_comparison([comparison], tmp_path / "out")
    assert {p.name for p in written} == {"compare.md", "compare.csv", "compare.tex"}
    assert "pip install 'repmtl[plots]'" in (tmp_path / "out" / "compare.md").read_text()
