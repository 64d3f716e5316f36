"""The published QM9 anchors (``docs/published/qm9.toml``): transcription checked against the
papers' own Δm%, and shown by ``repmtl compare`` beside our runs without unknown columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from repmtl.data import qm9
from repmtl.experiments.aggregate import summarize
from repmtl.experiments.published import load_published
from repmtl.experiments.runs import find_runs
from repmtl.experiments.tables import markdown
from repmtl.train.config import TrainConfig
from tests.experiments._fake_runs import write_baselines, write_run

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "published" / "qm9.toml"
#: rows printed with 2 significant digits for some targets (FAMO's Table 2) round Δm further
ROUNDED_ROWS = {"LS (EW)", "FAMO"}


def test_every_entry_has_the_eleven_targets_in_our_units():
    entries = load_published(PUBLISHED)
    assert [e.method for e in entries][:2] == ["STL", "LS (EW)"] and "FAMO" in [e.method for e in entries]
    for entry in entries:
        assert entry.benchmark == "qm9" and entry.source
        assert set(entry.metrics) == {f"{t}/mae" for t in qm9.TARGETS}, entry.method
    stl = entries[0].metrics
    assert 0.01 < stl["homo/mae"] < 0.1  # eV (the papers print 60.576 meV)


@pytest.mark.parametrize("entry", load_published(PUBLISHED)[1:], ids=lambda e: e.method)
def test_per_target_maes_reproduce_the_published_delta_m(entry):
    """Δm% = mean_k (M_k − M_STL,k) / M_STL,k × 100 (Navon et al. 2022, §6) from the transcribed
    numbers agrees with the Δm% the paper prints, up to the table's rounding."""
    stl = load_published(PUBLISHED)[0].metrics
    recomputed = sum((entry.metrics[k] - stl[k]) / stl[k] for k in stl) / len(stl) * 100
    assert recomputed == pytest.approx(entry.delta_m, abs=1.2 if entry.method in ROUNDED_ROWS else 0.6)


def test_compare_prints_them_beside_our_runs(tmp_path):
    config = TrainConfig(benchmark="qm9", method="ew", seed=0, epochs=1, max_steps=1)
    ours = {t: {"mae": 2.0 * value} for t, value in
            ((k.split("/")[0], v) for k, v in load_published(PUBLISHED)[0].metrics.items())}
    write_baselines(tmp_path, config, {t: {"mae": v["mae"] / 2} for t, v in ours.items()})
    write_run(tmp_path, config, ours, {t: {"mae": True} for t in ours})
    records, problems = find_runs([tmp_path])
    assert not problems
    (comparison,) = summarize(records, load_published(PUBLISHED))
    assert comparison.warnings == []
    text = markdown([comparison])
    assert "*Nash-MTL (published [" in text and "+62.00" in text and "ICML 2022" in text
    assert "+100.00" in text  # our made-up run: every MAE twice the STL's, Δm = +100 %
