"""The Gramian ``K = J Jᵀ`` of a ``T × d`` task Jacobian: one product vs column chunks.

For each T it times, on one fixed random ``J``:
  * ``one``: ``J @ J.T`` (a single BLAS call),
  * ``chunked``: :func:`repmtl.grads.gramian` (the sum over column chunks of ``GRAMIAN_CHUNK``),
interleaved in random order per round (``repmtl.bench.timing``), process CPU time on the CPU
(CUDA events on a GPU), threads pinned, and prints the median of the per-round ratios
``chunked ÷ one`` with their range. It decides ``repmtl.grads.GRAMIAN_CHUNK``.

    python benchmarks/gramian.py [--dim 984960] [--tasks 2 4 8 16 32] [--rounds 9] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch

from repmtl.bench.timing import StepClock, interleaved_timings
from repmtl.grads import GRAMIAN_CHUNK, gramian


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=984_960, help="columns of J (default: the bench MLP's d)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = StepClock(device)
    print(f"{clock.name}, {args.threads} thread(s); {args.rounds} interleaved rounds; d = {args.dim}, "
          f"chunk = {GRAMIAN_CHUNK} columns")
    print("| T | one product ms | chunked ms | chunked ÷ one | range |")
    print("|---|---|---|---|---|")
    for num_tasks in args.tasks:
        jacobian = torch.randn(num_tasks, args.dim, generator=torch.Generator().manual_seed(num_tasks)).to(device)
        contenders = {"one": lambda j=jacobian: j @ j.T, "chunked": lambda j=jacobian: gramian(j)}
        timings, _ = interleaved_timings(contenders, "one", clock, rounds=args.rounds, steps=1, warmup=2)
        one, chunked = timings["one"].summary(), timings["chunked"].summary()
        print(f"| {num_tasks} | {one['ms']:.2f} | {chunked['ms']:.2f} | {chunked['ratio']:.2f} | "
              f"{chunked['min']:.2f}–{chunked['max']:.2f} |")


if __name__ == "__main__":
    main()
