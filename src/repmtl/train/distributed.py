"""Training under ``torchrun``: the ranks of one run, found from the environment.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address); with
``WORLD_SIZE > 1`` :func:`ranks_from_env` joins the process group (``gloo`` on CPU, ``nccl`` on
CUDA, one GPU per local rank) once per process. Every rank builds the same run from the same
seed, takes its share of each global batch (:mod:`repmtl.train.data`), and steps with a
:class:`repmtl.step.reduce.Reducer`; rank 0 alone writes the run folder. ``docs/distributed.md``.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from repmtl.step.reduce import Reducer
from repmtl.train.runlog import to_floats


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes checkpoints, logs, results and the console."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """``True`` on every rank when it is on one (a signal reached only some ranks)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], dtype=torch.int64, device=_collective_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def reducer(self, samples: int | Mapping[str, int]) -> Reducer | None:
        """The step's reductions for this rank's ``samples``; ``None`` in one process."""
        return Reducer(samples) if self.distributed else None

    def mean(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The ranks' mean of scalar tensors (a step's penalties, for the logs): one all-reduce."""
        if not self.distributed or not values:
            return dict(values)
        packed = torch.stack([v.detach().reshape(()).float() for v in values.values()])
        dist.all_reduce(packed)
        packed /= self.world_size
        return {k: packed[i] for i, k in enumerate(values)}

    @torch.no_grad()
    def average_buffers(self, module: torch.nn.Module) -> None:
        """Replace the floating-point buffers (BatchNorm running statistics, which each rank
        moved with its own shard) by the ranks' mean, so every rank holds the same model."""
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        if not self.distributed or not buffers:
            return
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.all_reduce(flat)
        flat /= self.world_size
        start = 0
        for buffer in buffers:
            buffer.copy_(flat[start : start + buffer.numel()].view_as(buffer))
            start += buffer.numel()

    @contextmanager
    def own_randomness(self, seed: int, epoch: int, step: int, devices: Iterable[torch.device]) -> Iterator[None]:
        """Draws inside (data augmentation, dropout) come from a generator of this rank and step,
        and leave the shared stream untouched: every rank's method then draws the same numbers
        (RLW's weights, PCGrad's order), whatever the ranks drew for their own samples."""
        if not self.distributed:
            yield
            return
        cuda = [d.index if d.index is not None else torch.cuda.current_device() for d in devices if d.type == "cuda"]
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed((seed * 1_000_003 + epoch * 7_919 + step * 104_729 + self.rank * 15_485_863) % 2**63)
            yield


def ranks_from_env(environ: Mapping[str, str] | None = None, device: str = "cpu") -> Ranks:
    """The ranks ``torchrun`` describes in the environment; joins the process group if needed."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun): {exc}") from exc
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    ranks = Ranks(rank, world, local)
    if world > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
        atexit.register(_leave)
    if world > 1 and dist.get_world_size() != world:
        raise RuntimeError(f"the process group has {dist.get_world_size()} ranks, WORLD_SIZE says {world}")
    return ranks


def is_writer() -> bool:
    """Whether this process writes shared files and the console: rank 0, or the only process
    (before the process group exists, as ``torchrun``'s ``RANK`` says)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class SilentLogger:
    """The run logger of a rank that does not write: rows are built (for the progress line) but
    nothing is written."""

    epochs: list[dict[str, Any]]

    def __init__(self) -> None:
        self.epochs = []

    def log_step(self, step: int, epoch: int, values: Mapping[str, Any]) -> dict[str, Any]:
        return {"step": step, "epoch": epoch, **to_floats(values)}

    def log_epoch(self, epoch: int, step: int, values: Mapping[str, Any]) -> dict[str, Any]:
        row = {"epoch": epoch, "step": step, **to_floats(values)}
        self.epochs.append(row)
        return row

    def close(self) -> None:
        pass
