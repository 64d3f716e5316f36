"""Step time of external backbones vs the dilated ResNet-18 on synthscenes input (8×3×48×64, CPU, EW):
forward + repmtl.backward, no optimizer step; 2 warm-up steps, 5 interleaved timed steps. Needs [timm].
Run: PYTHONPATH=src python benchmarks/backbone_steps.py"""
import time

import torch

import repmtl
from repmtl.data._dense import dense_tasks
from repmtl.data.synthscenes.dataset import TASK_OUTPUTS
from repmtl.data.synthscenes.scene import CLASSES
from repmtl.model import MultiTaskModel
from repmtl.nets.backbones import build_dense_encoder
from repmtl.nets.deeplab import ASPPHead, build_deeplab

torch.manual_seed(0); torch.set_num_threads(2)
tasks = dense_tasks(tuple(TASK_OUTPUTS), len(CLASSES))
x = torch.randn(8, 3, 48, 64)
y = {"segmentation": torch.randint(0, len(CLASSES), (8, 48, 64)), "depth": torch.rand(8, 1, 48, 64), "normal": torch.nn.functional.normalize(torch.randn(8, 3, 48, 64), dim=1)}
def heads(c): return {t: ASPPHead(c, k, 8, (1, 2, 3)) for t, k in TASK_OUTPUTS.items()}
models = {
  "dilated resnet18 (project)": build_deeplab(dict(TASK_OUTPUTS), encoder="resnet18", rates=(1, 2, 3)),
  "timm:resnet18 (stride 32 + neck)": build_deeplab(dict(TASK_OUTPUTS), encoder="timm:resnet18", rates=(1, 2, 3)),
  "timm:resnet18 output_stride=8": MultiTaskModel(build_dense_encoder("timm:resnet18", model_args={"output_stride": 8}), heads(512)),
  "timm:vit_tiny_patch16_224": build_deeplab(dict(TASK_OUTPUTS), encoder="timm:vit_tiny_patch16_224", rates=(1, 2, 3)),
}
def step(m):
    m.zero_grad(set_to_none=True)
    out = m(x)
    losses = {t.name: t.loss(out.predictions[t.name], y[t.name]) for t in tasks}
    repmtl.backward(losses, representation=out.representation, method="ew")
times = {k: [] for k in models}
for m in models.values(): step(m); step(m)
for r in range(5):
    for k, m in models.items():
        t = time.perf_counter(); step(m); times[k].append(time.perf_counter() - t)
for k, v in times.items():
    v = sorted(v); print(f"{k:36s} median {1000*v[2]:7.1f} ms  min {1000*v[0]:7.1f} ms")
