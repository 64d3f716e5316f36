"""Per-step cost of each architecture relative to hard sharing, on the synthscenes network.

One step = forward + ``repmtl.backward`` (+ zero_grad), batch of 8 random 48×64 images with the
synthscenes losses; architectures are timed interleaved (round-robin), median of ``--rounds``
process-CPU-time measurements per architecture and method. CPU only; a small-budget measurement.

    PYTHONPATH=src python benchmarks/architectures.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import repmtl
from repmtl import methods as M
from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.nets.architectures import build_architecture


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--architectures", default="hps,mtan,mmoe,ple")
    parser.add_argument("--methods", default="ew,mgda")
    args = parser.parse_args()
    torch.manual_seed(0)
    bench = get_benchmark("synthscenes")
    options = BuildOptions()
    tasks = bench.tasks(options)
    names = tuple(t.name for t in tasks)
    sample = bench.splits(options).train
    batch = [sample[i] for i in range(args.batch)]
    x = torch.stack([b[0] for b in batch])
    targets = {t: torch.stack([b[1][t] for b in batch]) for t in names}
    archs = args.architectures.split(",")
    models = {a: build_architecture(a, bench.model(options, tasks)).train() for a in archs}
    times: dict[tuple[str, str], list[float]] = {}
    for method in args.methods.split(","):
        m = M.create(method, tasks=names)
        for _ in range(args.rounds + 1):  # the first round warms up
            for a, model in models.items():
                start = time.process_time()
                out = model(x)
                losses = {t.name: t.loss(out.predictions[t.name], targets[t.name]) for t in tasks}
                repmtl.backward(losses, representation=out.representation,
                                shared_params=list(model.shared_parameters()), method=m)
                model.zero_grad(set_to_none=True)
                times.setdefault((a, method), []).append(time.process_time() - start)
    print(f"| architecture | method | step (ms, median of {args.rounds}) | ratio to hps |")
    print("|---|---|---|---|")
    for method in args.methods.split(","):
        base = statistics.median(times[("hps", method)][1:]) if "hps" in models else None
        for a in archs:
            t = statistics.median(times[(a, method)][1:])
            ratio = f"{t / base:.2f}" if base else "n/a"
            print(f"| {a} | {method} | {1000 * t:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
