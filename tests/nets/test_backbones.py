"""External backbones (timm, open_clip) as encoders: local weights round-trip bit-exactly, clear
errors for a missing file, an unknown model or a missing extra, a training step through
repmtl.backward on synthscenes-size input, and a frozen encoder that receives no gradient."""

from __future__ import annotations

import sys

import pytest
import torch

import repmtl
from repmtl.nets.backbones import (
    DenseBackbone,
    build_dense_encoder,
    build_pooled_encoder,
    check_encoder,
)
from repmtl.nets.frozen import FrozenEncoder
from repmtl.train.build import build_run
from repmtl.train.config import TrainConfig
from repmtl.train.resolve import resolve

timm = pytest.importorskip("timm")

SIZE = {"n_train": 4, "n_val": 2, "n_test": 2}


def _saved(tmp_path, name: str, seed: int = 3):
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False)
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_local_weights_load_bit_exactly(tmp_path):
    model, path = _saved(tmp_path, "resnet18")
    encoder = build_dense_encoder("timm:resnet18", path)
    saved = model.state_dict()
    loaded = encoder.trunk.state_dict()
    assert set(loaded) == {k for k in saved if not k.startswith("fc.")}  # the classifier is dropped
    assert all(torch.equal(loaded[k], saved[k]) for k in loaded)
    fresh = build_dense_encoder("timm:resnet18").trunk.state_dict()
    assert not torch.equal(fresh["conv1.weight"], saved["conv1.weight"])  # loading changed something
    model.eval(), encoder.eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(encoder.trunk.forward_features(x), model.forward_features(x))


def test_dense_map_has_the_benchmark_stride_and_channels():
    encoder = build_dense_encoder("timm:resnet18", output_stride=8)
    z = encoder(torch.randn(2, 3, 48, 64))
    assert z.shape == (2, 512, 6, 8) and encoder.out_channels == 512 and encoder.native_stride == 32
    dilated = build_dense_encoder("timm:resnet18", output_stride=8, model_args={"output_stride": 8})
    assert dilated.native_stride == 8 and dilated(torch.randn(1, 3, 48, 64)).shape == (1, 512, 6, 8)
    with pytest.raises(ValueError, match="divisible by 8"):
        encoder(torch.randn(1, 3, 50, 64))


def test_pooled_vector():
    encoder = build_pooled_encoder("timm:resnet18")
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 512) and encoder.out_channels == 512


def test_missing_weights_file_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet18.pth.*never downloaded"):
        build_dense_encoder("timm:resnet18", missing)


def test_weights_of_another_model_are_refused(tmp_path):
    _, path = _saved(tmp_path, "resnet18")
    with pytest.raises(ValueError, match="does not match"):
        build_dense_encoder("timm:resnet34", path)


def test_unknown_model_and_hub_names_are_refused():
    with pytest.raises(ValueError, match="no model 'resnet_nonexistent'"):
        check_encoder("timm:resnet_nonexistent")
    with pytest.raises(ValueError, match="hub names are not accepted"):
        check_encoder("timm:hf-hub:timm/resnet18.a1_in1k")
    with pytest.raises(ValueError, match="<library>:<model>"):
        check_encoder("torchhub:resnet18")


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'repmtl\[timm\]'"):
        build_dense_encoder("timm:resnet18")
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ImportError, match=r"pip install 'repmtl\[clip\]'"):
        build_pooled_encoder("clip:ViT-B-32")


def _step(config: TrainConfig, run=None):
    config = resolve(config)
    run = run or build_run(config)
    x, y = next(iter(torch.utils.data.DataLoader(run.splits.train, batch_size=2)))
    out = run.model(x)
    losses = {t.name: t.loss(out.predictions[t.name], y[t.name]) for t in run.tasks}
    repmtl.backward(losses, representation=out.representation, method=run.method,
                    shared_params=run.shared, level=config.level)
    return run


@pytest.mark.parametrize("method,level", [("ew", None), ("mgda", "parameters")])
def test_timm_resnet_trains_a_step_on_synthscenes(tmp_path, method, level):
    _, path = _saved(tmp_path, "resnet18")
    run = _step(TrainConfig(benchmark="synthscenes", encoder="timm:resnet18", pretrained=str(path),
                            method=method, level=level, options=SIZE))
    assert isinstance(run.model.encoder, DenseBackbone)
    grads = [p.grad for p in run.model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_vit_trains_a_step_on_synthscenes(tmp_path):
    _, path = _saved(tmp_path, "vit_tiny_patch16_224")
    run = _step(TrainConfig(benchmark="synthscenes", encoder="timm:vit_tiny_patch16_224", pretrained=str(path),
                            method="mgda", level="parameters", options=SIZE))
    assert run.model.encoder.native_stride == 16  # patch tokens on their 16-pixel grid
    assert all(p.grad is not None for p in run.model.encoder.parameters())


def test_frozen_encoder_gets_no_gradient_and_keeps_its_statistics():
    config = TrainConfig(benchmark="synthscenes", encoder="timm:resnet18", freeze_encoder=True,
                         method="mgda", level="representation", options=SIZE)
    run = build_run(resolve(config))
    assert isinstance(run.model.encoder, FrozenEncoder) and run.shared == []
    before = {k: v.clone() for k, v in run.model.encoder.state_dict().items()}
    run.model.train()
    assert not run.model.encoder.frozen.training  # BatchNorm statistics stay fixed
    _step(config, run)
    assert all(p.grad is None for p in run.model.encoder.parameters())
    assert all(p.grad is not None for p in run.model.heads.parameters())
    after = run.model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="--freeze-encoder leaves no shared parameter"):
        resolve(TrainConfig(**{**config.to_dict(), "level": "parameters"}))


def test_benchmarks_without_external_encoders_refuse_them():
    with pytest.raises(ValueError, match="one fixed network"):
        resolve(TrainConfig(benchmark="multidigits", encoder="timm:resnet18"))
    with pytest.raises(ValueError, match="no model"):
        resolve(TrainConfig(benchmark="synthscenes", encoder="timm:not_a_model"))
