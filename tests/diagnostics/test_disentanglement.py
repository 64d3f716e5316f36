"""Feature Disentanglement against hand-computed entropies and a loop over positions."""

import math

import pytest
import torch

from repmtl.diagnostics import feature_disentanglement
from repmtl.diagnostics.disentanglement import position_entropy


def test_by_hand():
    maps = torch.tensor([[1.0, 0.0, 2.0], [1.0, 3.0, -2.0]])  # p: (½,½), (0,1), (½,½)
    assert feature_disentanglement(maps).item() == pytest.approx(2 * math.log(2) / 3)


def test_three_tasks_by_hand():
    maps = torch.tensor([[1.0], [1.0], [2.0]])  # p = (¼, ¼, ½)
    expected = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert feature_disentanglement(maps).item() == pytest.approx(expected)
    assert feature_disentanglement(maps, normalized=True).item() == pytest.approx(expected / math.log(3))


def test_zero_columns_are_left_out():
    maps = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert feature_disentanglement(maps).item() == pytest.approx(math.log(2))  # not log(2)/2, not NaN
    assert feature_disentanglement(torch.zeros(3, 4, 5)).item() == 0.0


def test_one_task_is_zero():
    assert feature_disentanglement(torch.randn(1, 2, 3, 4)).item() == 0.0
    assert feature_disentanglement(torch.randn(1, 5), normalized=True).item() == 0.0


def test_uniform_maps_reach_log_t():
    maps = torch.full((4, 2, 3), -0.7)
    assert feature_disentanglement(maps).item() == pytest.approx(math.log(4))
    assert feature_disentanglement(maps, normalized=True).item() == pytest.approx(1.0)


def test_disjoint_maps_are_fully_disentangled():
    maps = torch.zeros(3, 2, 3, 4, 4)
    for t in range(3):
        maps[t, :, t] = torch.rand(2, 4, 4) + 0.1  # task t uses channel t only
    assert feature_disentanglement(maps).item() == 0.0


def test_matches_loop_over_every_position():
    torch.manual_seed(0)
    maps = torch.randn(3, 2, 4, 3, 3, dtype=torch.float64)
    maps[:, 0, 1] = 0.0  # a dead channel in sample 0
    flat = maps.reshape(3, -1)
    entropies = []
    for j in range(flat.shape[1]):
        col = flat[:, j].abs()
        if col.sum() == 0:
            continue
        p = col / col.sum()
        entropies.append(-sum(float(x) * math.log(float(x)) for x in p if x > 0))
    assert feature_disentanglement(maps).item() == pytest.approx(sum(entropies) / len(entropies))
    entropy, valid = position_entropy(maps)
    assert entropy.shape == maps.shape[1:] and int(valid.sum()) == len(entropies)


def test_sign_and_scale_invariance_and_container_inputs():
    torch.manual_seed(1)
    maps = torch.randn(3, 8, 5)
    fd = feature_disentanglement(maps)
    torch.testing.assert_close(feature_disentanglement(-maps * 7.0), fd)
    torch.testing.assert_close(feature_disentanglement(list(maps)), fd)
    torch.testing.assert_close(feature_disentanglement({"a": maps[0], "b": maps[1], "c": maps[2]}), fd)
    assert 0.0 <= fd.item() <= math.log(3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="share one shape"):
        feature_disentanglement([torch.ones(2), torch.ones(3)])
    with pytest.raises(ValueError):
        feature_disentanglement(torch.ones(3))
