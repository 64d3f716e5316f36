"""Dilated ResNet encoders, DeepLab heads, local pretrained weights, one training step."""

from __future__ import annotations

import time

import pytest
import torch
from torchvision.models import resnet18

import repmtl
from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.data._dense import dense_tasks
from repmtl.nets.deeplab import build_deeplab
from repmtl.nets.resnet import ResNetEncoder, build_resnet, load_pretrained

NYU_OUTPUTS = {"segmentation": 13, "depth": 1, "normal": 3}


@pytest.mark.parametrize(
    "name, channels, stride", [("resnet18", 512, 8), ("resnet18", 512, 16), ("resnet18", 512, 32), ("resnet50", 2048, 8)]
)
def test_encoder_output_stride(name, channels, stride):
    encoder = ResNetEncoder(name, output_stride=stride).eval()
    with torch.no_grad():
        z = encoder(torch.randn(1, 3, 64, 32))
    assert z.shape == (1, channels, 64 // stride, 32 // stride)
    assert encoder.out_channels == channels


def test_dilation_replaces_stride_in_basic_blocks():
    model = build_resnet("resnet18", 8)
    assert model.layer3[0].conv1.stride == (1, 1) and model.layer3[0].downsample[0].stride == (1, 1)
    assert [b.conv2.dilation for b in model.layer3] == [(2, 2), (2, 2)]
    assert [b.conv2.dilation for b in model.layer4] == [(4, 4), (4, 4)]
    assert model.layer4[0].conv1.dilation == (2, 2)  # as torchvision's pattern for bottlenecks
    tv = build_resnet("resnet50", 8)
    assert tv.layer4[0].conv2.dilation == (2, 2) and tv.layer4[1].conv2.dilation == (4, 4)


def test_input_not_divisible_by_stride_is_refused():
    with pytest.raises(ValueError, match="divisible by 8"):
        ResNetEncoder("resnet18")(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="unknown ResNet"):
        ResNetEncoder("resnet7")


def test_pretrained_weights_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    encoder = ResNetEncoder("resnet18", pretrained=path)
    assert torch.equal(encoder.stem[0].weight, reference.conv1.weight)
    assert torch.equal(encoder.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert not torch.equal(ResNetEncoder("resnet18").stem[0].weight, reference.conv1.weight)

    with pytest.raises(FileNotFoundError, match="never downloaded"):
        ResNetEncoder("resnet18", pretrained=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"does not match .*mis-shaped"):
        ResNetEncoder("resnet50", pretrained=path)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.pth"):
        load_pretrained(build_resnet("resnet18"), broken)
    partial = tmp_path / "partial.pth"
    state = reference.state_dict()
    state.pop("layer2.0.conv1.weight")
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r"1 missing.*layer2\.0\.conv1\.weight"):
        ResNetEncoder("resnet18", pretrained=partial)


def one_step(model, tasks, x, targets):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(x)
    losses = {t.name: t.loss(out.predictions[t.name], targets[t.name]) for t in tasks}
    record = repmtl.backward(losses, representation=out.representation, method="ew")
    optimizer.step()
    changed = {n: not torch.equal(p, before[n]) for n, p in model.named_parameters()}
    return out, record, changed


def random_batch(batch, height, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    normal = torch.nn.functional.normalize(torch.randn(batch, 3, height, width, generator=g), dim=1)
    targets = {
        "segmentation": torch.randint(-1, 13, (batch, height, width), generator=g),
        "depth": torch.rand(batch, 1, height, width, generator=g) * 5,
        "normal": normal,
    }
    return torch.randn(batch, 3, height, width, generator=g), targets


def test_one_training_step_resnet18_small():
    torch.manual_seed(0)
    tasks = dense_tasks(list(NYU_OUTPUTS), 13)
    model = build_deeplab(NYU_OUTPUTS, encoder="resnet18")
    x, targets = random_batch(2, 32, 48)
    out, record, changed = one_step(model, tasks, x, targets)
    assert out.representation.shape == (2, 512, 4, 6)
    assert {t: p.shape for t, p in out.predictions.items()} == {
        "segmentation": (2, 13, 32, 48), "depth": (2, 1, 32, 48), "normal": (2, 3, 32, 48)
    }
    assert torch.isfinite(record.losses).all()
    assert all(changed.values()), [n for n, c in changed.items() if not c][:5]


def test_nyuv2_and_cityscapes_presets():
    for name, outputs, batch in (("nyuv2", NYU_OUTPUTS, 8), ("cityscapes", {"segmentation": 7, "depth": 1}, 64)):
        bench = get_benchmark(name)
        assert bench.needs_data_root and bench.encoders == ("resnet50", "resnet18")
        d = bench.defaults
        assert (d.epochs, d.batch_size, d.lr, d.weight_decay, d.optimizer, d.lr_step, d.lr_gamma) == (
            200, batch, 1e-4, 1e-5, "adam", 100, 0.5
        )
        tasks = bench.tasks(BuildOptions())
        assert [t.name for t in tasks] == list(outputs)
        primary = {"segmentation": "miou", "depth": "abs_err", "normal": "mean_angle"}
        assert {t.name: t.primary for t in tasks} == {k: v for k, v in primary.items() if k in outputs}
        model = bench.model(BuildOptions(encoder="resnet18"), tasks)
        assert model.encoder.name == "resnet18" and model.encoder.output_stride == 8
        assert {t: h[-2].out_channels for t, h in model.heads.items()} == outputs
    assert get_benchmark("nyuv2").model(BuildOptions(), dense_tasks(["depth"], 13)).encoder.name == "resnet50"
    cs19 = get_benchmark("cityscapes").tasks(BuildOptions(extra={"classes": "19"}))
    assert cs19[0].metrics().num_classes == 19


@pytest.mark.slow
def test_one_training_step_nyuv2_resnet50_full_size():
    """The NYUv2 configuration: dilated ResNet-50, three ASPP heads, 288×384, batch 2."""
    torch.manual_seed(0)
    bench = get_benchmark("nyuv2")
    tasks = bench.tasks(BuildOptions())
    model = bench.model(BuildOptions(), tasks)
    x, targets = random_batch(2, 288, 384)
    start = time.perf_counter()
    out, record, changed = one_step(model, tasks, x, targets)
    elapsed = time.perf_counter() - start
    print(f"\nNYUv2 ResNet-50 one step (forward + repmtl.backward ew + Adam), batch 2, CPU: {elapsed:.1f} s")
    assert out.representation.shape == (2, 2048, 36, 48)
    assert out.predictions["segmentation"].shape == (2, 13, 288, 384)
    assert torch.isfinite(record.losses).all()
    assert all(changed.values())
