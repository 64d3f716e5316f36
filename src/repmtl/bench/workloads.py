"""The bench's workloads: a model, one fixed batch and per-task losses, built identically for
every contender (same seed, same inputs, same device).

* ``mlp``: a 4-layer ReLU MLP encoder of about 1 M parameters (256 → 640 → 640 → 640), one
  linear regression head per task, batch 64; any ``T``.
* ``cnn``: the synthscenes CPU network (:func:`repmtl.nets.small_dense.build_small_dense`),
  3×48×64 input, batch 8, one per-pixel regression head per task; any ``T``.
* ``resnet18``: a dilated ResNet-18 encoder (output stride 8) at 64×64, batch 4, one small
  dense head (:class:`~repmtl.nets.small_dense.SmallDenseHead`) per task; any ``T``.
* ``nyuv2``: the ``nyuv2`` preset's network (DeepLab: dilated ResNet-50, one ASPP head per
  task) and its three tasks and losses, at reduced resolution (72×96 by default), batch 2;
  ``T`` is 3.
* ``qm9``: the ``qm9`` preset's encoder (:class:`~repmtl.nets.mpnn.MPNNEncoder`, Gilmer et al.
  2017 as Nash-MTL / FAMO use it, 64 wide) and linear heads, on 32 synthetic molecules of 18
  atoms (QM9's mean size) as complete graphs, batch 32; any ``T`` (11 in the papers). Needs the
  ``[qm9]`` extra (torch_geometric); without it the bench stops with a message naming the extra.
  The batch is packed as one ``(B, atoms, 4)`` tensor (atomic number, x, y, z in Å).

Targets are random (the cost of a step does not depend on their values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.model import MultiTaskModel
from repmtl.nets.mpnn import ELEMENT_NUMBERS, MPNNEncoder
from repmtl.nets.resnet import ResNetEncoder
from repmtl.nets.small_dense import SmallDenseHead, build_small_dense

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Problem:
    """One workload instance: ``forward()`` runs the model on the fixed batch."""

    name: str
    model: MultiTaskModel
    inputs: torch.Tensor
    targets: dict[str, torch.Tensor]
    loss_fns: dict[str, LossFn]

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.model.task_names

    def forward(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(Z, {task: L_t})`` for the fixed batch."""
        out = self.model(self.inputs)
        losses = {t: self.loss_fns[t](out.predictions[t], self.targets[t]) for t in self.task_names}
        return out.representation, losses


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    build: Callable[[int, torch.device, tuple[int, int] | None], Problem]
    #: ``None``: any number of tasks; else the only one the workload has
    fixed_tasks: int | None = None


def _task_names(num_tasks: int) -> list[str]:
    if num_tasks < 1:
        raise ValueError(f"a workload needs at least one task, got T={num_tasks}")
    return [f"t{i}" for i in range(num_tasks)]


def _regression(name: str, model: MultiTaskModel, inputs: torch.Tensor, device: torch.device) -> Problem:
    with torch.no_grad():
        shapes = {t: p.shape for t, p in model(inputs).predictions.items()}
    targets = {t: torch.randn(shape, device=device) for t, shape in shapes.items()}
    return Problem(name, model, inputs, targets, {t: F.mse_loss for t in shapes})


def _mlp(num_tasks: int, device: torch.device, size: tuple[int, int] | None) -> Problem:
    width = 640
    encoder = nn.Sequential(
        nn.Linear(256, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU()
    )
    model = MultiTaskModel(encoder, {t: nn.Linear(width, 1) for t in _task_names(num_tasks)}).to(device)
    return _regression("mlp", model, torch.randn(64, 256, device=device), device)


def _cnn(num_tasks: int, device: torch.device, size: tuple[int, int] | None) -> Problem:
    height, width = size or (48, 64)
    model = build_small_dense({t: 1 for t in _task_names(num_tasks)}).to(device)
    return _regression("cnn", model, torch.randn(8, 3, height, width, device=device), device)


def _resnet18(num_tasks: int, device: torch.device, size: tuple[int, int] | None) -> Problem:
    height, width = size or (64, 64)
    encoder = ResNetEncoder("resnet18", output_stride=8)
    heads = {t: SmallDenseHead(encoder.out_channels, 1, hidden=64, upsample=8) for t in _task_names(num_tasks)}
    model = MultiTaskModel(encoder, heads).to(device)
    return _regression("resnet18", model, torch.randn(4, 3, height, width, device=device), device)


def _nyuv2(num_tasks: int, device: torch.device, size: tuple[int, int] | None) -> Problem:
    height, width = size or (72, 96)
    preset = get_benchmark("nyuv2")
    options = BuildOptions()
    tasks = preset.tasks(options)
    if num_tasks != len(tasks):
        raise ValueError(f"the nyuv2 workload has {len(tasks)} tasks, not T={num_tasks}")
    model = preset.model(options, tasks).to(device)
    batch = 2
    inputs = torch.randn(batch, 3, height, width, device=device)
    normal = F.normalize(torch.randn(batch, 3, height, width, device=device), dim=1)
    targets = {
        "segmentation": torch.randint(0, 13, (batch, height, width), device=device),
        "depth": torch.rand(batch, 1, height, width, device=device) + 0.5,
        "normal": normal,
    }
    missing = sorted({t.name for t in tasks} - set(targets))
    if missing:
        raise RuntimeError(f"the nyuv2 preset has tasks {missing} this workload makes no targets for")
    return Problem("nyuv2", model, inputs, {t.name: targets[t.name] for t in tasks}, {t.name: t.loss for t in tasks})


class PackedMolecules(nn.Module):
    """:class:`MPNNEncoder` on one packed tensor ``(B, P, 4)``: atomic number (0: padding), x, y, z."""

    def __init__(self, encoder: MPNNEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.out_features = encoder.out_features

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.encoder((packed[..., 0].round().long(), packed[..., 1:]))


#: QM9's composition: about 51 % of its atoms are H, 35 % C, 6 % N, 8 % O, F rare
_ELEMENT_FREQUENCIES = (0.51, 0.35, 0.055, 0.08, 0.005)


def synthetic_molecules(graphs: int, atoms: int, device: torch.device) -> torch.Tensor:
    """``(graphs, atoms, 4)`` random molecules: elements drawn with QM9's frequencies, coordinates
    N(0, 1.5 Å) per axis (QM9-like interatomic distances)."""
    probabilities = torch.tensor(_ELEMENT_FREQUENCIES)
    numbers = torch.tensor(ELEMENT_NUMBERS, dtype=torch.float32)[torch.multinomial(probabilities, graphs * atoms, True)]
    positions = 1.5 * torch.randn(graphs, atoms, 3)
    return torch.cat([numbers.view(graphs, atoms, 1), positions], dim=-1).to(device)


def _qm9(num_tasks: int, device: torch.device, size: tuple[int, int] | None) -> Problem:
    encoder = PackedMolecules(MPNNEncoder(hidden=64))
    model = MultiTaskModel(encoder, {t: nn.Linear(encoder.out_features, 1) for t in _task_names(num_tasks)}).to(device)
    return _regression("qm9", model, synthetic_molecules(32, 18, device), device)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("mlp", "MLP 256→640→640→640 (≈1.0 M shared parameters), linear heads, batch 64", _mlp),
        Workload("cnn", "synthscenes CPU CNN (small_dense), per-pixel regression heads, batch 8", _cnn),
        Workload("resnet18", "dilated ResNet-18 (stride 8), small dense heads", _resnet18),
        Workload("nyuv2", "nyuv2 preset (DeepLab ResNet-50, ASPP heads, 3 tasks)", _nyuv2, 3),
        Workload("qm9", "qm9 preset's MPNN (NNConv + GRU + Set2Set, 64 wide), linear heads, 32 synthetic "
                 "18-atom molecules as complete graphs", _qm9),
    )
}


def build_problem(
    workload: str, num_tasks: int, device: torch.device, *, seed: int = 0, size: tuple[int, int] | None = None
) -> Problem:
    """A fresh :class:`Problem`; the same ``seed`` gives the same weights and batch."""
    if workload not in WORKLOADS:
        raise KeyError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    torch.manual_seed(seed)
    problem = WORKLOADS[workload].build(num_tasks, device, size)
    problem.model.train()
    return problem


def shared_parameter_count(problem: Problem) -> int:
    return sum(p.numel() for p in problem.model.shared_parameters())
