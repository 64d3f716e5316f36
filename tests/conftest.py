"""Shared fixtures: a tiny two-head CNN whose gradients every core test can check by hand."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings
from torch import nn

from repmtl.model import MultiTaskModel

# Property tests draw the same examples on every run (CI included), so a failure reproduces;
# HYPOTHESIS_PROFILE=explore draws fresh ones.
settings.register_profile("repmtl", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repmtl"))


def tiny_model(num_tasks: int = 2, seed: int = 0, batchnorm: bool = True) -> MultiTaskModel:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.Tanh()]
    heads = {
        f"t{i}": nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 5 * 5, 1 + i))
        for i in range(num_tasks)
    }
    return MultiTaskModel(nn.Sequential(*layers), heads).double()


def tiny_losses(model: MultiTaskModel, x: torch.Tensor):
    out = model(x)
    losses = {t: (p - 0.3 * (i + 1)).pow(2).mean() * (i + 1) for i, (t, p) in enumerate(out.predictions.items())}
    return out, losses


@pytest.fixture
def model() -> MultiTaskModel:
    return tiny_model()


@pytest.fixture
def batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 1, 5, 5, dtype=torch.float64)
