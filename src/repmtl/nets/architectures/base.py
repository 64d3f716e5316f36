"""The common interface of the multi-task architectures, and the parts they share.

Every architecture is built from a benchmark's hard-sharing :class:`~repmtl.model.MultiTaskModel`
(its encoder and heads): the encoder is split into stages or copied into experts / columns, the
heads become the task towers. ``forward(x)`` returns a :class:`~repmtl.model.ModelOutput` whose
``representation`` is the mapping ``task -> Z_t``, the input of task ``t``'s head
(``docs/architectures.md``). Three groups of parameters:

* ``encoder``: the shared modules (every one of them reaches every task's output);
* ``task_specific[t]``: task ``t``'s modules *below* ``Z_t`` (attention modules, gates, task
  experts): they reach task ``t``'s output only;
* ``heads[t]``: task ``t``'s head, above ``Z_t``.

``shared_parameters()`` and ``task_parameters(t)`` read these groups; a test per architecture
checks them against the autograd graph.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from repmtl.model import ModelOutput, MultiTaskModel
from repmtl.nets.resnet import ResNetEncoder


class MultiTaskArchitecture(MultiTaskModel):
    """Base class: ``encoder`` (shared), ``task_specific`` (below ``Z_t``), ``heads`` (above);
    ``task_names`` and ``shared_parameters`` are those of :class:`MultiTaskModel`."""

    #: the ``--architecture`` name
    name: str = ""

    def __init__(self, encoder: nn.Module, task_specific: Mapping[str, nn.Module], heads: Mapping[str, nn.Module]) -> None:
        super().__init__(encoder, heads)
        self.task_specific = nn.ModuleDict(dict(task_specific))

    def task_parameters(self, task: str | None = None) -> Iterator[nn.Parameter]:
        tasks = self.task_names if task is None else (task,)
        modules = [m for t in tasks for m in (self.task_specific[t], self.heads[t]) if t in self.heads]
        return (p for m in modules for p in m.parameters() if p.requires_grad)

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``task -> Z_t`` for one batch shared by every task."""
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor) -> ModelOutput:
        if isinstance(inputs, Mapping):
            raise TypeError(
                f"the {self.name} architecture takes one batch shared by every task; multi-input data "
                "(one batch per task) needs --architecture hps"
            )
        reps = self.representations(inputs)
        return ModelOutput(reps, {t: self.heads[t](z) for t, z in reps.items()})


class Stage(nn.Module):
    """One encoder stage split as ``u = body(x)``, ``p = tail(u)``: MTAN reads the intermediate
    ``u`` and the output ``p``; the other architectures only ``p``."""

    def __init__(self, body: nn.Module, tail: nn.Module) -> None:
        super().__init__()
        self.body, self.tail = body, tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x))

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.body(x)
        return u, self.tail(u)


def _split_sequential(seq: nn.Sequential) -> list[Stage]:
    """Stages of a conv-BN-ReLU sequence: a stage ends after a ReLU; a pooling layer that follows
    opens the next stage (as MTAN's SegNet pools after the attention), so ``u`` and ``p`` of a
    stage share one resolution. A trailing pooling layer is the last stage's tail."""
    stages: list[Stage] = []
    body: list[nn.Module] = []
    for module in seq:
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) and not body and stages and isinstance(stages[-1].tail, nn.Identity):
            body.append(module)
            continue
        body.append(module)
        if isinstance(module, nn.ReLU):
            stages.append(Stage(nn.Sequential(*body), nn.Identity()))
            body = []
    if body:
        if stages and all(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in body):
            stages[-1] = Stage(stages[-1].body, nn.Sequential(*body))
        else:
            stages.append(Stage(nn.Sequential(*body), nn.Identity()))
    return stages


def encoder_stages(encoder: nn.Module) -> list[Stage]:
    """The stages of a benchmark encoder: the four residual stages of a dilated ResNet (stem
    joined to the first; body = all blocks but the last), or the conv-BN-ReLU blocks of a
    sequential CNN (the small CPU encoders). Other encoders are refused."""
    if isinstance(encoder, ResNetEncoder):
        layers = [nn.Sequential(*encoder.stem, *encoder.layer1), encoder.layer2, encoder.layer3, encoder.layer4]
        return [Stage(nn.Sequential(*list(layer)[:-1]), list(layer)[-1]) for layer in layers]
    if isinstance(encoder, nn.Sequential) and any(isinstance(m, nn.Conv2d) for m in encoder):
        return _split_sequential(encoder)
    raise ValueError(
        f"this architecture needs an encoder made of convolutional stages (a dilated ResNet or a "
        f"sequential CNN); the benchmark's encoder is a {type(encoder).__name__}. Use --architecture hps"
    )


def conv_channels(module: nn.Module, *, first: bool = False) -> int | None:
    """The input channels of the first ``Conv2d`` (``first``) or output channels of the last one."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    return convs[0].in_channels if first else convs[-1].out_channels


def input_channels(encoder: nn.Module) -> int:
    channels = conv_channels(encoder, first=True)
    if channels is None:
        raise ValueError(
            f"the gates of a mixture of experts read image inputs (B×C×H×W); the benchmark's encoder "
            f"{type(encoder).__name__} has no convolution. Use --architecture hps"
        )
    return channels


def copies(module: nn.Module, count: int, reinit: bool) -> nn.ModuleList:
    """``count`` independent copies of ``module``; ``reinit``: each re-initialised (experts or
    columns of a randomly initialised network must not start identical), else all start from
    ``module``'s (pretrained) weights."""
    out = nn.ModuleList(copy.deepcopy(module) for _ in range(count))
    if reinit:
        for replica in out:
            for m in replica.modules():
                if hasattr(m, "reset_parameters") and m is not replica:
                    m.reset_parameters()
    return out


class Gate(nn.Module):
    """A softmax gate ``w(x) = softmax(W x)`` over ``n`` experts (Ma et al. 2018, Eq. 6).

    The papers' inputs are vectors; an image or feature map ``B×C×H×W`` is first average-pooled
    to ``C×4×4`` so that the gate stays small for any input size (a decision of this library).
    """

    grid = 4

    def __init__(self, in_channels: int, n: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels * self.grid * self.grid, n)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(F.adaptive_avg_pool2d(x, self.grid).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def mix(weights: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """``Σ_e w_e(x) f_e(x)`` per sample: ``weights`` ``B×E``, ``outputs`` E tensors ``B×…``."""
    stacked = torch.stack(outputs, dim=1)
    return (weights.view(*weights.shape, *([1] * (stacked.ndim - 2))) * stacked).sum(dim=1)
