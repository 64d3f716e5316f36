"""Parameter-level Jacobian cost, vectorised (``vmap``) vs python loop, relative to one backward.

For each workload and number of tasks T this times, after an untimed forward pass:
  * ``sum``: one backward of Σ_t L_t (what EW costs; the reference),
  * ``vmap``: ``repmtl.grads.parameter_jacobian(..., vectorize=True)`` (one vectorised backward),
  * ``loop``: the same Jacobian from T python-loop backward passes,
interleaved in random order per round (``repmtl.bench.timing``), process CPU time on the CPU
(CUDA events on a GPU), threads pinned, and prints the median of the per-round ratios with
their range. It decides the CPU default of ``vectorize`` (docs/performance.md).

    python benchmarks/grads.py [--workloads cnn qm9] [--tasks 2 4 8] [--rounds 7] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch

from repmtl.bench.timing import StepClock, interleaved_timings
from repmtl.bench.workloads import WORKLOADS, Problem, build_problem
from repmtl.grads import parameter_jacobian


def _contenders(problem: Problem) -> dict[str, object]:
    shared = list(problem.model.shared_parameters())

    def losses() -> list[torch.Tensor]:
        problem.model.zero_grad(set_to_none=True)
        return list(problem.forward()[1].values())

    def total() -> None:
        sum(losses()).backward()

    def jacobian(vectorize: bool):
        def step() -> None:
            parameter_jacobian(losses(), shared, vectorize=vectorize)

        return step

    return {"sum": total, "vmap": jacobian(True), "loop": jacobian(False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["cnn"], choices=list(WORKLOADS))
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = StepClock(device)
    print(f"{clock.name}, {args.threads} thread(s); {args.rounds} interleaved rounds; each step includes its forward")
    print("| workload | T | vmap × sum | range | loop × sum | range | sum ms |")
    print("|---|---|---|---|---|---|---|")
    for workload in args.workloads:
        for num_tasks in args.tasks:
            problem = build_problem(workload, num_tasks, device)
            timings, failures = interleaved_timings(
                _contenders(problem), "sum", clock, rounds=args.rounds, steps=args.steps, warmup=args.warmup
            )
            row = [workload, str(num_tasks)]
            for name in ("vmap", "loop"):
                if name in failures:
                    row += [f"err: {failures[name]}", ""]
                    continue
                s = timings[name].summary()
                row += [f"{s['ratio']:.2f}", f"{s['min']:.2f}–{s['max']:.2f}"]
            row.append(f"{timings['sum'].summary()['ms']:.1f}")
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
