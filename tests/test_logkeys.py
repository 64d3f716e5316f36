"""The run-log key schema: unambiguous families, every key a training run writes is one of them
(in the log its family names), and the writers and the report build keys only through it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from repmtl import logkeys as K
from repmtl.diagnostics import layer_alphas
from repmtl.experiments.report import write_report
from repmtl.model import MultiTaskModel
from repmtl.train import TrainConfig, train

from . import _tiny  # noqa: F401  (registers the tiny benchmarks)

SRC = Path(__file__).resolve().parents[1] / "src" / "repmtl"


def _sample(family: K.KeyFamily) -> tuple[str, ...]:
    return tuple(f"{name}x" for name in family.fields)


@pytest.mark.parametrize("family", K.FAMILIES, ids=lambda f: f.pattern)
def test_a_built_key_parses_back_to_its_family_only(family):
    values = _sample(family)
    key = family.key(*values)
    parsed = K.parse(key)
    assert parsed is not None and parsed.family is family
    assert dict(parsed.fields) == dict(zip(family.fields, values))
    assert [f.pattern for f in K.FAMILIES if f.match(key) is not None] == [family.pattern]


def test_examples():
    assert K.LOSS.key("depth") == "loss/depth"
    assert K.VAL_METRIC.key("segmentation", "miou") == "val/segmentation/miou"
    assert K.ALPHA_HEAD.key("seg", "layer1.0.conv1") == "alpha/head/seg/layer1.0.conv1"
    assert K.DIAG_LEVEL.key() == "diag/level"
    assert K.parse("alpha/encoder_mean").family is K.ALPHA_ENCODER_MEAN
    assert K.parse("alpha/encoder/conv").family is K.ALPHA_ENCODER
    # the last field keeps its '/': vectors split by the logger, nested layer names
    assert K.parse("info/corrections/3").fields == {"name": "corrections/3"}
    assert K.parse("alpha/head/seg/block/conv").fields == {"task": "seg", "layer": "block/conv"}
    assert K.val_metrics({"a": {"acc": 1.0}, "b": {"rmse": 2.0, "mae": 3.0}}) == {
        "val/a/acc": 1.0, "val/b/rmse": 2.0, "val/b/mae": 3.0}


@pytest.mark.parametrize("key", ["loss", "loss/", "val/a", "val//m", "alpha/head/seg", "diag/norm", "nonsense/x", ""])
def test_keys_outside_the_schema(key):
    assert K.parse(key) is None


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="takes 2 value"):
        K.VAL_METRIC.key("a")
    with pytest.raises(ValueError, match="task must be a non-empty name without '/'"):
        K.ALPHA_HEAD.key("a/b", "conv")
    with pytest.raises(ValueError, match="must not be empty"):
        K.LOSS.key("")
    with pytest.raises(ValueError, match="fixed words first"):
        K.KeyFamily("{task}/loss", ("steps",), "fields before words")


def _logged(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("method", ["mgda", "gradnorm", "gradvac"])
def test_every_key_a_run_writes_is_in_the_schema(tmp_path, method):
    train(TrainConfig(benchmark="tiny", method=method, regularizer="repmtl", out=str(tmp_path), name="r", epochs=2,
                      log_every=1, diagnostics_every=2, progress=False))
    run = tmp_path / "tiny" / "r"
    seen: set[str] = set()
    for log in ("steps", "epochs"):
        for row in _logged(run / f"{log}.jsonl"):
            for key in row:
                parsed = K.parse(key)
                assert parsed is not None, f"{log}.jsonl key {key!r} is outside repmtl.logkeys"
                assert log in parsed.family.logs, f"{key!r} in {log}.jsonl; its family says {parsed.family.logs}"
                seen.add(parsed.family.pattern)
    expected = {K.STEP, K.EPOCH, K.LR, K.LOSS, K.PENALTY, K.PENALTY_SCALE, K.INFO, K.DIAG_LEVEL, K.DIAG_GDS, K.DIAG_GMS,
                K.DIAG_COND, K.DIAG_FD, K.DIAG_NORM, K.TRAIN_LOSS, K.TRAIN_PENALTY, K.VAL_METRIC,
                K.SELECTION_SCORE, K.EPOCH_TIME, K.SKIPPED_STEPS}
    if method != "gradvac":  # a direction method returns no weights
        expected |= {K.WEIGHT, K.DIAG_COS}
    assert {f.pattern for f in expected} <= seen  # the run exercised the families it should
    if method == "gradnorm":  # a per-task info vector, split by task
        assert any(K.parse(k).fields["name"].endswith("/a") for k in _logged(run / "steps.jsonl")[0]
                   if K.INFO.match(k))


def test_layer_alpha_keys_are_in_the_schema():
    torch.manual_seed(0)
    model = MultiTaskModel(nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32)),
                           {"a": nn.Linear(32, 16), "b": nn.Linear(32, 16)})
    keys = layer_alphas(model)
    families = {K.parse(k).family.pattern for k in keys}
    assert families == {f.pattern for f in (K.ALPHA_ENCODER, K.ALPHA_HEAD, K.ALPHA_ENCODER_MEAN, K.ALPHA_HEAD_MEAN)}
    assert all("epochs" in K.parse(k).family.logs for k in keys)


def test_the_report_reads_a_real_run_through_the_schema(tmp_path):
    train(TrainConfig(benchmark="tiny", method="mgda", regularizer="repmtl", out=str(tmp_path), name="r", epochs=2,
                      log_every=1, diagnostics_every=2, progress=False))
    run = tmp_path / "tiny" / "r"
    md = write_report(run).read_text()
    for png in ("losses", "weights", "penalties", "penalty_scale", "geometry", "grad_norms", "cos_to_update", "val_metrics"):
        assert f"]({png}.png)" in md, png
    last_epoch = _logged(run / "epochs.jsonl")[-1]
    row = next(line for line in md.splitlines() if line.startswith("| a |"))
    assert f"| {last_epoch[K.TRAIN_LOSS.key('a')]:.4g} |" in row
    assert f"acc {last_epoch[K.VAL_METRIC.key('a', 'acc')]:.4g}" in row


#: modules that write or read run-log keys: they spell none of them out
WRITERS_AND_READERS = ["train/trainer.py", "train/runlog.py", "diagnostics/live.py", "experiments/plots.py",
                       *(str(p.relative_to(SRC)) for p in sorted((SRC / "experiments" / "report").glob("*.py"))),
                       *(str(p.relative_to(SRC)) for p in sorted((SRC / "experiments" / "studies").glob("*.py")))]


def test_writers_and_the_report_build_keys_only_through_the_schema():
    heads = sorted({f.words[0] for f in K.FAMILIES if len(f.words) > 1 or f.fields})
    key_like = re.compile(rf"^({'|'.join(heads)})/")
    found = []
    for name in WRITERS_AND_READERS:
        for node in ast.walk(ast.parse((SRC / name).read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and key_like.match(node.value):
                found.append(f"{name}:{node.lineno}: {node.value!r}")
    assert len(WRITERS_AND_READERS) >= 14
    assert not found, "build these keys with repmtl.logkeys:\n" + "\n".join(found)
