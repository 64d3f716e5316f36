"""One EW training step of the QM9 MPNN on a real batch: ``factored`` vs ``per_edge`` messages.

Builds the ``qm9-small`` training set (from the cache folder given, else the default cache),
takes its first ``--batch-size`` molecules, and times forward + backward of the sum of the 11
losses for the two message computations with identical weights, interleaved in random order per
round (``repmtl.bench.timing``), process CPU time, threads pinned; prints each contender's
median step time and the median of per-round ratios to ``factored`` with their range. Needs the
``[qm9]`` extra.

    python benchmarks/qm9_step.py [--cache-dir /tmp/qm9cache] [--batch-size 120] [--rounds 5]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from repmtl.bench.timing import StepClock, interleaved_timings
from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.data.qm9 import qm9_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="QM9 cache folder (option cache_dir)")
    parser.add_argument("--batch-size", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    bench = get_benchmark("qm9-small")
    options = BuildOptions(extra={"cache_dir": args.cache_dir} if args.cache_dir else {})
    tasks = bench.tasks(options)
    train = bench.splits(options).train
    inputs, targets = next(iter(DataLoader(train, batch_size=args.batch_size, shuffle=False)))
    torch.manual_seed(0)
    models = {"factored": qm9_model(64, tasks, "factored"), "per_edge": qm9_model(64, tasks, "per_edge")}
    models["per_edge"].load_state_dict(models["factored"].state_dict())

    def step(model: torch.nn.Module):
        def run() -> None:
            model.zero_grad(set_to_none=True)
            out = model(inputs)
            sum(t.loss(out.predictions[t.name], targets[t.name]) for t in tasks).backward()

        return run

    clock = StepClock(torch.device("cpu"))
    timings, failures = interleaved_timings({k: step(m) for k, m in models.items()}, "factored", clock,
                                            rounds=args.rounds, steps=1, warmup=1)
    atoms = int((inputs[0] > 0).sum())
    print(f"{clock.name}, {args.threads} thread(s); {args.rounds} interleaved rounds; batch of {args.batch_size} "
          f"molecules ({atoms} atoms) from the qm9-small training split")
    print("| messages | ms per EW step (median) | × factored | range |")
    print("|---|---|---|---|")
    for name, timing in timings.items():
        s = timing.summary()
        print(f"| {name} | {s['ms']:.0f} | {s['ratio']:.2f} | {s['min']:.2f}–{s['max']:.2f} |")
    for name, error in failures.items():
        print(f"| {name} | failed: {error} | | |")


if __name__ == "__main__":
    main()
