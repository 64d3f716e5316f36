"""One step over the ranks of a ``torch.distributed`` process group: what each rank exchanges so
that every method, at every level, sees the *global batch* and every rank applies the same update.

Each rank holds ``n_r`` of the global batch's ``N = Σ_r n_r`` samples and its own mean losses
``L_t^r``. The global batch's loss is ``L_t = Σ_r (n_r/N) L_t^r``. :meth:`Reducer.global_losses`
gives each rank the stand-in

    ``L̃_t^r = L_t + c_r (L_t^r − sg(L_t^r))``,  ``c_r = R n_r / N``  (``R`` ranks, ``sg``: detached),

whose *value* is the global loss on every rank (so loss weightings, loss transforms such as
``log(L_t + ε)`` and the finiteness check agree everywhere) and whose *gradient* is ``c_r ∂L_t^r``,
so that the mean over ranks of any gradient taken from it is the global batch's gradient
(``c_r = 1`` for equal shards). From there, per level (``docs/distributed.md``):

- **parameters / last layer**: the ``T×d`` Jacobian is averaged over ranks before the method
  (:meth:`Reducer.jacobian`); the Gramian, the weights, an aggregator's direction and ``Jᵀα`` are
  then the global batch's, on every rank;
- **representation, Gramian weightings**: the Gramian of the saliencies is a sum over samples;
  rank ``r``'s saliencies are ``R`` times the global batch's at its samples, so
  ``K = Σ_r K_r / R²`` (:meth:`Reducer.representation_gramian`, one ``T×T`` all-reduce);
- **representation, aggregators**: the direction is not a sum over samples (GradVac's cosines,
  MetaBalance's norms), so the saliencies (and ``Z``, which GradDrop reads) are gathered into the
  global ``T×(N·D)`` Jacobian and each rank keeps its own slice of the direction
  (:meth:`Reducer.gather_representation`, :meth:`Reducer.local_direction`);
- **every parameter** then gets the mean of the ranks' ``.grad`` (:meth:`Reducer.gradients`,
  called after :func:`repmtl.backward`): heads and penalties are computed on local samples, and
  the mean of ``c_r``-scaled local gradients is the global one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from repmtl import grads as G


@dataclass
class _Shares:
    """This rank's part of the global batch, per task."""

    #: ``c_r = R n_r / N`` per task (``T``)
    scale: torch.Tensor
    #: every rank's number of representation entries (``n_r · D``), for the gathered Jacobian
    sizes: list[int] | None = None


class Reducer:
    """The cross-rank reductions of one step (``repmtl.backward(..., reduce=Reducer(n))``).

    Args:
        samples: this rank's number of samples in the step, one number or one per task
            (multi-input data: each task's batch).
        group: the process group (default: the global one, initialised by the caller).
    """

    def __init__(self, samples: int | Mapping[str, int], group: dist.ProcessGroup | None = None) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("Reducer needs an initialised torch.distributed process group (init_process_group)")
        counts = samples.values() if isinstance(samples, Mapping) else [samples]
        if any(not isinstance(n, int) or n < 1 for n in counts):
            raise ValueError(f"samples must be integers ≥ 1 (this rank's batch size), got {samples!r}")
        self.samples = samples
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self._shares: _Shares | None = None

    # ---- losses -------------------------------------------------------------------------------

    def global_losses(self, losses: Mapping[str, torch.Tensor], *, second_order: bool = False) -> dict[str, torch.Tensor]:
        """The stand-ins ``L̃_t^r`` (module doc): the global batch's loss as value, this rank's
        ``c_r``-scaled gradient. One all-reduce of ``2T`` numbers.

        ``second_order``: a penalty differentiates the saliencies, which depend on the losses
        through a loss transform (``∂ log(L + ε)/∂Z = ∂L/∂Z / (L + ε)``). Every gradient that
        reaches ``L̃`` is then averaged over the ranks (a hook, one ``T``-sized all-reduce per
        backward pass through the losses), so that path also sees the global batch's loss."""
        names = tuple(losses)
        local = torch.stack([loss.reshape(()) for loss in losses.values()])
        device = local.device
        if isinstance(self.samples, Mapping):
            missing = sorted(set(names) - set(self.samples))
            if missing:
                raise KeyError(f"Reducer samples has no count for task(s) {missing}")
            counts = torch.tensor([float(self.samples[t]) for t in names], dtype=torch.float64, device=device)
        else:
            counts = torch.full((len(names),), float(self.samples), dtype=torch.float64, device=device)
        packed = torch.cat([counts * local.detach().to(torch.float64), counts])
        dist.all_reduce(packed, group=self.group)
        total, everyone = packed[: len(names)], packed[len(names):]
        scale = self.world_size * counts / everyone
        self._shares = _Shares(scale=scale)
        stand_in = (total / everyone).to(local.dtype) + scale.to(local.dtype) * (local - local.detach())
        if second_order:
            stand_in.register_hook(self._mean_of_ranks)
        return {name: stand_in[i] for i, name in enumerate(names)}

    def _mean_of_ranks(self, grad: torch.Tensor) -> torch.Tensor:
        """The ranks' mean of a gradient, keeping this rank's graph (for a double backward)."""
        mean = grad.detach().clone()
        dist.all_reduce(mean, group=self.group)
        return grad + (mean.div_(self.world_size) - grad.detach())

    # ---- parameter and last-layer levels ----------------------------------------------------

    def jacobian(self, jacobian: G.TaskJacobian) -> G.TaskJacobian:
        """The ranks' mean Jacobian (the global batch's), in one ``T×d`` all-reduce; the heads'
        task gradients of the same passes stay local (they are averaged with ``.grad``)."""
        flat = jacobian.matrix()  # the loop's own buffer, or a fresh copy of the vmap blocks
        dist.all_reduce(flat, group=self.group)
        flat.div_(self.world_size)
        views, start = [], 0
        for param in jacobian.params:
            views.append(flat[:, start : start + param.numel()].view(flat.shape[0], *param.shape))
            start += param.numel()
        return G.TaskJacobian(views, jacobian.params, flat=flat, task_grads=jacobian.task_grads)

    # ---- representation level ---------------------------------------------------------------

    def representation_gramian(self, gramian: torch.Tensor) -> torch.Tensor:
        """``K = Σ_r K_r / R²`` from this rank's saliency Gramian ``K_r`` (module doc)."""
        total = gramian.contiguous().clone()
        dist.all_reduce(total, group=self.group)
        return total.div_(self.world_size**2)

    def gather_representation(
        self, jacobian: torch.Tensor, representation: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The global batch's representation-level Jacobian ``T×(N·D)`` (every rank's saliencies,
        divided by ``R``: the global batch's scale) and, when given, the gathered ``Z``."""
        sizes = self._gather_sizes(jacobian.shape[1], jacobian.device)
        self._shares = _Shares(scale=self._scale(), sizes=sizes)
        gathered = _gather_columns(jacobian.contiguous(), sizes, self.group) / self.world_size
        reps = None
        if representation is not None:
            flat = representation.reshape(1, -1).contiguous()
            reps = _gather_columns(flat, sizes, self.group).reshape(-1, *representation.shape[1:])
        return gathered, reps

    def local_direction(self, direction: torch.Tensor) -> torch.Tensor:
        """This rank's slice of the global direction, times ``R`` (its ``.grad`` is averaged)."""
        if self._shares is None or self._shares.sizes is None:
            raise RuntimeError("local_direction needs gather_representation first")
        sizes = self._shares.sizes
        start = sum(sizes[: self.rank])
        return direction[start : start + sizes[self.rank]] * self.world_size

    # ---- gradients ----------------------------------------------------------------------------

    def gradients(self, params: Iterable[torch.Tensor]) -> None:
        """Replace every ``.grad`` by the ranks' mean, in one all-reduce per dtype. A parameter
        with a gradient on some rank only gets one (zeros elsewhere) on all, so the optimizers
        step the same parameters everywhere."""
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for param in params:
            by_dtype.setdefault(param.dtype, []).append(param)
        for dtype, group in by_dtype.items():
            device = group[0].device
            present = torch.tensor([p.grad is not None for p in group], dtype=dtype, device=device)
            parts = [present] + [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group
            ]
            buffer = torch.cat(parts)
            dist.all_reduce(buffer, group=self.group)
            buffer.div_(self.world_size)
            flags = buffer[: len(group)].tolist()  # one host sync
            start = len(group)
            for flag, param in zip(flags, group, strict=True):
                chunk = buffer[start : start + param.numel()].view_as(param)
                start += param.numel()
                if flag > 0:
                    param.grad = chunk

    # ---- helpers ------------------------------------------------------------------------------

    def _scale(self) -> torch.Tensor:
        if self._shares is None:
            raise RuntimeError("call global_losses first (repmtl.backward does, given reduce=)")
        return self._shares.scale

    def _gather_sizes(self, size: int, device: torch.device) -> list[int]:
        mine = torch.tensor([size], dtype=torch.int64, device=device)
        every = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(every, mine, group=self.group)
        return [int(s.item()) for s in every]


def _gather_columns(matrix: torch.Tensor, sizes: list[int], group: dist.ProcessGroup | None) -> torch.Tensor:
    """All-gather ``rows×sizes[r]`` matrices (padded to the largest) into ``rows×Σ sizes``."""
    rows, widest = matrix.shape[0], max(sizes)
    padded = matrix.new_zeros(rows, widest)
    padded[:, : matrix.shape[1]] = matrix
    every = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(every, padded, group=group)
    return torch.cat([part[:, :size] for part, size in zip(every, sizes, strict=True)], dim=1)
