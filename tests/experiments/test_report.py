"""repmtl.experiments.report on synthetic run folders in the trainer's layout."""

import json
import math
import re

import numpy as np
import pytest
from matplotlib import image as mpimg

from repmtl.experiments.report import write_report

TASKS = ["seg", "depth"]


def write_run(root, *, steps=60, epochs=5, penalties=False, alphas=True, config=True, corrupt=False):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    if config:
        (root / "config.json").write_text(json.dumps({"benchmark": "synth", "method": "mgda", "tasks": TASKS, "seed": 3}))
    lines = []
    for step in range(1, steps + 1):
        row = {"epoch": (step - 1) * epochs // steps, "step": step, "lr": 1e-3}
        for i, t in enumerate(TASKS):
            row[f"loss/{t}"] = float((i + 1) * math.exp(-step / 30) + 0.01 * rng.random())
            row[f"weight/{t}"] = float(0.5 + 0.1 * i + 0.01 * rng.standard_normal())
        if penalties:
            row["penalty/tsr"] = float(0.7 - 0.001 * step)
        if step % 2 == 0:  # diagnostics every 2 steps only
            row.update({"diag/level": "parameters", "diag/gds": float(0.3 - step / 600), "diag/gms": 0.8,
                        "diag/fd": float(0.6 + 0.001 * step), "diag/cond": math.inf if step == 10 else 2.0 + step / 50})
            for i, t in enumerate(TASKS):
                row[f"diag/norm/{t}"] = float(10.0 ** (i - 1) * (1 + step / 60))
                row[f"diag/cos/{t}"] = float(0.4 + 0.2 * i)
        lines.append(json.dumps(row))  # json writes inf as Infinity, as the trainer's logger does
    if corrupt:
        lines.append('{"epoch": 4, "step": 61, "loss/se')  # a run killed mid-write
    (root / "steps.jsonl").write_text("\n".join(lines) + "\n")
    rows = []
    for e in range(epochs):
        row = {"epoch": e, "step": (e + 1) * steps // epochs, "lr": 1e-3}
        row.update({f"train/loss/{t}": 1.0 / (e + 1) * (i + 1) for i, t in enumerate(TASKS)})
        row.update({"val/seg/miou": 0.2 + 0.05 * e, "val/seg/pix_acc": 0.5 + 0.04 * e, "val/depth/abs_err": 0.9 - 0.1 * e})
        if alphas:
            row.update({"alpha/encoder/0": 40.0 / (e + 1), "alpha/encoder/3": 6.0 - 0.5 * e, "alpha/encoder_mean": 0.0,
                        "alpha/head/seg/0": 5.0 - 0.3 * e, "alpha/head/depth/weight": 9.0 - e,
                        "alpha/head_mean/seg": 5.0 - 0.3 * e, "alpha/head_mean/depth": 9.0 - e})
            row["alpha/encoder_mean"] = (row["alpha/encoder/0"] + row["alpha/encoder/3"]) / 2
        rows.append(json.dumps(row))
    (root / "epochs.jsonl").write_text("\n".join(rows) + "\n")
    return root


def images(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def test_full_run(tmp_path):
    run = write_run(tmp_path / "run", corrupt=True)
    path = write_report(run)
    assert path == run / "report" / "report.md"
    md = path.read_text()
    linked = images(md)
    expected = {"losses.png", "weights.png", "geometry.png", "grad_norms.png", "cos_to_update.png",
                "val_metrics.png", "alpha_layers.png", "alpha_dynamics.png", "alpha_means.png"}
    assert set(linked) == expected
    for name in linked:
        png = run / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        h, w = mpimg.imread(png).shape[:2]
        assert 300 <= h <= 2000 and 500 <= w <= 2600, (name, h, w)
    assert "Regularizer penalties: no `penalty/*`" in md  # absent data are said, not drawn
    assert "1 non-finite value(s) not drawn" in md  # the inf condition number
    assert "1 in `steps.jsonl`" in md  # the truncated line
    assert "| benchmark | synth |" in md and "| tasks | seg, depth |" in md
    assert "| diagnostics level | parameters |" in md
    # per-task row: last-epoch train loss of depth = 2/5, head mean α = 9 − 4 = 5
    row = next(line for line in md.splitlines() if line.startswith("| depth |"))
    assert "| 0.4 |" in row and "| 5 |" in row and "abs_err 0.5" in row
    gds_row = next(line for line in md.splitlines() if line.startswith("| GDS |"))
    last = [0.3 - s / 600 for s in range(2, 61, 2)][-3:]  # last 10% of the 30 diagnostic lines
    assert f"{np.mean(last):.4g}" in gds_row
    cond_row = next(line for line in md.splitlines() if line.startswith("| κ(J) |"))
    assert "inf" not in cond_row  # the inf was at step 10, not at the end


def test_missing_parts_are_skipped_and_said(tmp_path):
    run = write_run(tmp_path / "run", alphas=False, penalties=True, config=False)
    (run / "epochs.jsonl").unlink()
    md = write_report(run).read_text()
    assert "`epochs.jsonl` is missing" in md and "`config.json` is missing" in md
    linked = set(images(md))
    assert "penalties.png" in linked
    assert not linked & {"alpha_layers.png", "alpha_means.png", "val_metrics.png"}
    assert "Power-law α per layer: no `alpha/encoder/*`" in md
    assert "| tasks | seg, depth |" in md  # inferred from the loss keys


def test_no_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        write_report(tmp_path / "empty")
