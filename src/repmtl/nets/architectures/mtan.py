"""MTAN: Multi-Task Attention Network (Liu, Johns & Davison, "End-to-End Multi-Task Learning
with Attention", CVPR 2019, §3.2 and Fig. 2).

A shared backbone of ``J`` stages; stage ``j`` gives an intermediate feature ``u_j`` and its
output ``p_j``. Each task has one soft-attention module per stage:

    a_t^1 = g_t^1(u_1),                      â_t^1 = a_t^1 ⊙ p_1
    a_t^j = g_t^j([u_j, f^{j-1}(â_t^{j-1})]),  â_t^j = a_t^j ⊙ p_j      (j > 1)

``g_t^j`` (task-specific): 1×1 conv-BN-ReLU, 1×1 conv-BN, sigmoid, so ``a_t^j ∈ (0, 1)`` masks
``p_j`` channel- and position-wise. ``f^j`` (shared by the tasks, as in the authors' code): a
3×3 conv-BN-ReLU to the channels of ``u_{j+1}``, then average pooling to its resolution when the
next stage downsamples (the SegNet version max-pools; our dilated ResNets keep the resolution
after stage 2). ``Z_t = â_t^J`` has the shape of the encoder output, so the benchmark's heads are
used unchanged.

Stages: the four residual stages of a dilated ResNet (``u`` = the stage's blocks but the last),
or the conv-BN-ReLU blocks of the small CPU CNNs (``u`` = the block before its pooling, so
``u = p`` for blocks without pooling).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.architectures.base import (
    MultiTaskArchitecture,
    conv_channels,
    encoder_stages,
)


def _mask(cin: int, cout: int) -> nn.Sequential:
    """``g``: 1×1 conv-BN-ReLU, 1×1 conv-BN, sigmoid."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 1), nn.BatchNorm2d(cout), nn.Sigmoid(),
    )


def _link(cin: int, cout: int) -> nn.Sequential:
    """``f``: 3×3 conv-BN-ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Shared(nn.Module):
    def __init__(self, stages: list[nn.Module], links: list[nn.Module]) -> None:
        super().__init__()
        self.stages, self.links = nn.ModuleList(stages), nn.ModuleList(links)


class MTAN(MultiTaskArchitecture):
    name = "mtan"

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        stages = encoder_stages(encoder)
        inner = [conv_channels(s.body) for s in stages]
        outer = [conv_channels(s) for s in stages]
        links = [_link(outer[j], inner[j + 1]) for j in range(len(stages) - 1)]
        masks = {
            t: nn.ModuleList(
                _mask(inner[j] + (inner[j] if j else 0), outer[j]) for j in range(len(stages))
            )
            for t in heads
        }
        super().__init__(_Shared(stages, links), masks, heads)

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = []
        for stage in self.encoder.stages:
            u, x = stage.both(x)
            features.append((u, x))
        reps = {}
        for task, masks in self.task_specific.items():
            attended = None
            for j, (u, p) in enumerate(features):
                if attended is None:
                    a = masks[j](u)
                else:
                    previous = self.encoder.links[j - 1](attended)
                    if previous.shape[-2:] != u.shape[-2:]:
                        previous = F.adaptive_avg_pool2d(previous, u.shape[-2:])
                    a = masks[j](torch.cat([u, previous], dim=1))
                attended = a * p
            reps[task] = attended
        return reps


def build_mtan(model: MultiTaskModel) -> MTAN:
    return MTAN(model.encoder, model.heads)
