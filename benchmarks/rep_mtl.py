"""Rep-MTL step cost: time and peak memory relative to EW and to a T-backward method.

For each workload this measures, in a fresh process per configuration and all in this one
run, the median time of a full training step (forward, ``repmtl.backward``, optimizer step)
and the peak extra memory of the steps:

  * ``ew``          equal weighting,
  * ``ew+log``      EW on log losses (Rep-MTL's loss transform alone),
  * ``repmtl``      EW + TSR + CSA on log losses (the paper's preset),
  * ``nashmtl``     Nash-MTL at parameter level (T vectorised backward passes + a T×T solve),

and prints each relative to ``ew``. Workloads:

  * ``dense``: the synthscenes CPU benchmark (small dilated CNN, 3 dense tasks, 48×64, batch 32);
  * ``resnet-rep``: a ResNet-sized representation, ``Z`` of 512×36×48 per sample (NYUv2's
    288×384 at output stride 8), with an ASPP head per task (13-class seg, depth, normals),
    batch 2; a single 1×1 conv stands in for the encoder so the cost is that of the
    representation-level machinery and the heads.

CPU memory is the growth of the process's peak resident set size during the steps (so it
includes activations, gradients and allocator slack); on CUDA, ``max_memory_allocated``.

    python benchmarks/rep_mtl.py [--workloads dense resnet-rep] [--repeats 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import current_rss_mb, median_seconds, peak_rss_mb  # noqa: E402

CONFIGS = {
    "ew": dict(method="ew", transform="none", regularizer=False),
    "ew+log": dict(method="ew", transform="log", regularizer=False),
    "repmtl": dict(method="ew", transform="log", regularizer=True),
    "nashmtl": dict(method="nashmtl", transform="none", regularizer=False),
}


def _workload(name: str, device: torch.device):
    from repmtl.benchmarks import BuildOptions
    from repmtl.data import get_benchmark

    if name == "dense":
        bench = get_benchmark("synthscenes")
        options = BuildOptions()
        tasks = bench.tasks(options)
        model = bench.model(options, tasks)
        data = bench.splits(options).train
        items = [data[i] for i in range(32)]
        x = torch.stack([item[0] for item in items])
        targets = {t.name: torch.stack([item[1][t.name] for item in items]) for t in tasks}
    elif name == "resnet-rep":
        from torch import nn

        from repmtl.data._dense import dense_tasks
        from repmtl.model import MultiTaskModel
        from repmtl.nets.deeplab import ASPPHead

        tasks = dense_tasks(("segmentation", "depth", "normal"), 13)
        outputs = {"segmentation": 13, "depth": 1, "normal": 3}
        encoder = nn.Sequential(nn.Conv2d(3, 512, 1), nn.ReLU())
        model = MultiTaskModel(encoder, {t: ASPPHead(512, c, upsample=1) for t, c in outputs.items()})
        torch.manual_seed(0)
        x = torch.randn(2, 3, 36, 48)
        normal = torch.nn.functional.normalize(torch.randn(2, 3, 36, 48), dim=1)
        targets = {"segmentation": torch.randint(0, 13, (2, 36, 48)), "depth": torch.rand(2, 1, 36, 48) + 0.5,
                   "normal": normal}
    else:
        raise ValueError(f"unknown workload {name!r}")
    targets = {k: v.to(device) for k, v in targets.items()}
    return model.to(device), tasks, x.to(device), targets


def _measure(workload: str, config: str, repeats: int, device_name: str) -> tuple[float, float]:
    import repmtl
    from repmtl.regularizers import RepMTL

    torch.set_num_threads(torch.get_num_threads())
    device = torch.device(device_name)
    torch.manual_seed(0)
    model, tasks, x, targets = _workload(workload, device)
    spec = CONFIGS[config]
    method = repmtl.methods.create(spec["method"], tasks=[t.name for t in tasks]).to(device)
    regularizers = [RepMTL().to(device)] if spec["regularizer"] else []
    optimizer = torch.optim.Adam(list(model.parameters()) + list(method.parameters()), lr=1e-4)
    model.train()

    def step() -> None:
        out = model(x)
        losses = {t.name: t.loss(out.predictions[t.name], targets[t.name]) for t in tasks}
        optimizer.zero_grad(set_to_none=True)
        repmtl.backward(losses, representation=out.representation, method=method, regularizers=regularizers,
                        loss_transform=spec["transform"])
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = current_rss_mb()
    seconds = median_seconds(step, repeats=repeats, warmup=2, device=device)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = peak_rss_mb() - base
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["dense", "resnet-rep"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    print(f"device={args.device} threads={torch.get_num_threads()} repeats={args.repeats}")
    for workload in args.workloads:
        results = {}
        for config in args.configs:
            with context.Pool(1) as pool:
                results[config] = pool.apply(_measure, (workload, config, args.repeats, args.device))
        base_time, base_mem = results.get("ew", (float("nan"), float("nan")))
        print(f"\n{workload}")
        print(f"{'config':>10} {'step ms':>9} {'× ew':>6} {'peak MB':>9} {'× ew':>6}")
        for config, (seconds, peak) in results.items():
            print(f"{config:>10} {seconds * 1e3:>9.1f} {seconds / base_time:>6.2f} {peak:>9.1f} {peak / base_mem:>6.2f}")


if __name__ == "__main__":
    main()
