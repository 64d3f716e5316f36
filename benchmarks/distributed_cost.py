"""Per-step cost of the distributed reduction for a Gramian method (UPGrad, parameter level).

Two gloo ranks on this machine's CPU; for each T in --tasks, interleaved rounds of
(a) the step of one process on its local batch (no reduction) and (b) the same step with
:class:`repmtl.step.reduce.Reducer` (losses, the T×d Jacobian, then every gradient averaged).
Wall-clock seconds (the reduction waits on the other rank, which CPU time would not count);
the ratio (b)/(a) per round, median and quartiles over rounds, from rank 0. One run measures
every T:

    PYTHONPATH=src python benchmarks/distributed_cost.py --tasks 2 4 8
"""

from __future__ import annotations

import argparse
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from repmtl import methods as M
from repmtl.bench.timing import interleaved_timings
from repmtl.model import MultiTaskModel
from repmtl.step import backward
from repmtl.step.reduce import Reducer


class WallClock:
    name = "wall clock"

    def __call__(self, step) -> float:
        begin = time.perf_counter()
        step()
        return time.perf_counter() - begin


def _step(net, method, params, x, ys, reduce_on: bool):
    def run() -> None:
        out = net(x)
        losses = {t: nn.functional.cross_entropy(out.predictions[t], ys[t]) for t in ys}
        for p in params:
            p.grad = None
        reduce = Reducer(len(x)) if reduce_on else None
        backward(losses, representation=out.representation, method=method, reduce=reduce)
        if reduce is not None:
            reduce.gradients(params)

    return run


def _worker(rank: int, world: int, port: int, tasks: list[int], width: int, batch: int, rounds: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    for T in tasks:
        encoder = nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        net = MultiTaskModel(encoder, {f"t{i}": nn.Linear(width, 4) for i in range(T)})
        params = list(net.parameters())
        method = M.create("upgrad", tasks=tuple(net.heads))
        x = torch.randn(batch, 32)
        ys = {t: torch.randint(0, 4, (batch,)) for t in net.heads}
        contenders = {"one process": _step(net, method, params, x, ys, False),
                      "2 ranks": _step(net, method, params, x, ys, True)}
        timings, failures = interleaved_timings(contenders, "one process", WallClock(), rounds=rounds, steps=5,
                                                warmup=3, seed=T)
        if rank == 0:
            d = sum(p.numel() for p in encoder.parameters())
            s, r = timings["one process"].summary(), timings["2 ranks"].summary()
            print(f"T={T} d={d} batch/rank={batch}: one process {s['ms']:.2f} ms, 2 ranks {r['ms']:.2f} ms, "
                  f"ratio {r['ratio']:.3f} (quartiles {r['q1']:.3f}-{r['q3']:.3f}, {r['rounds']} rounds)"
                  + (f" failures {failures}" if failures else ""), flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64, help="samples per rank")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, args.tasks, args.width, args.batch, args.rounds), nprocs=2, join=True)


if __name__ == "__main__":
    main()
