"""Training-step overhead of live diagnostics, relative to no diagnostics, measured in one run.

Times ``Trainer._train_epoch`` (forward, ``repmtl.backward``, optimizer step, logging) over a
fixed number of steps with ``--diagnostics`` off, ``every=10`` and ``every=1``, interleaving
the settings and taking medians so drifting machine load affects them alike. The per-epoch
power-law α (one SVD per layer) is timed separately: it runs once per epoch, not per step.

    python benchmarks/diagnostics.py [--benchmark synthscenes] [--method ew] [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from repmtl.diagnostics import layer_alphas
from repmtl.train import TrainConfig, Trainer
from repmtl.train.runlog import RunLogger

SETTINGS = {"off": None, "every=10": 10, "every=1": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="synthscenes")
    parser.add_argument("--method", default="ew")
    parser.add_argument("--level", default=None)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {k: [] for k in SETTINGS}
    with tempfile.TemporaryDirectory() as out:
        trainers = {}
        for name, every in SETTINGS.items():
            config = TrainConfig(benchmark=args.benchmark, method=args.method, level=args.level, out=out,
                                 name=name.replace("=", ""), max_steps=args.steps, diagnostics_every=every,
                                 log_every=10, progress=False)
            trainers[name] = Trainer(config)
        for trainer in trainers.values():  # warm-up: first-call allocations, data caches
            logger = RunLogger(trainer.run_dir, tensorboard=False)
            trainer._train_epoch(logger)
            logger.close()
        for _ in range(args.rounds):
            for name, trainer in trainers.items():
                logger = RunLogger(trainer.run_dir, tensorboard=False)
                start = time.perf_counter()
                trainer._train_epoch(logger)
                times[name].append((time.perf_counter() - start) / args.steps)
                logger.close()
        start = time.perf_counter()
        alphas = layer_alphas(trainers["off"].model)
        alpha_seconds = time.perf_counter() - start
    base = statistics.median(times["off"])
    print(f"benchmark={args.benchmark} method={args.method} steps={args.steps} rounds={args.rounds} "
          f"threads={torch.get_num_threads()}")
    print(f"{'diagnostics':>12} {'ms/step':>9} {'overhead':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>12} {median * 1e3:>9.1f} {100 * (median / base - 1):>8.1f}%")
    print(f"power-law α of {sum(k.startswith('alpha/') and '_mean' not in k for k in alphas)} layers, "
          f"once per epoch: {alpha_seconds * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
