"""GDS, GMS, norms, cosine to the update and condition number against hand-computed values
and against the same quantities computed from explicit gradient vectors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from repmtl.diagnostics import (
    condition_number,
    cosine_to_update,
    gds,
    gms,
    gradient_norms,
)
from repmtl.diagnostics.geometry import cosine_matrix


def gram(*vectors):
    j = torch.tensor(vectors, dtype=torch.float64)
    return j @ j.T


def test_two_tasks_by_hand():
    k = torch.tensor([[4.0, 2.0], [2.0, 9.0]], dtype=torch.float64)  # norms 2 and 3, cosine 2/6
    torch.testing.assert_close(gradient_norms(k), torch.tensor([2.0, 3.0], dtype=torch.float64))
    assert gds(k).item() == pytest.approx(1 / 3)
    assert gms(k).item() == pytest.approx(12 / 13)  # 2·2·3 / (4 + 9)


def test_three_tasks_by_hand():
    # g1 = (1, 0), g2 = (0, 2), g3 = (-1, 0): cosines 0, -1, 0; GMS terms 0.8, 1, 0.8
    k = gram((1, 0), (0, 2), (-1, 0))
    assert gds(k).item() == pytest.approx(-1 / 3)
    assert gms(k).item() == pytest.approx(2.6 / 3)
    torch.testing.assert_close(gradient_norms(k), torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64))


def test_one_task_is_defined():
    k = torch.tensor([[2.5]])
    assert gds(k).item() == 1.0 and gms(k).item() == 1.0
    assert condition_number(k).item() == 1.0
    assert condition_number(torch.zeros(1, 1)).item() == math.inf


def test_zero_gradients_are_defined_not_nan():
    one_zero = gram((1, 0), (0, 0))
    assert gds(one_zero).item() == 0.0  # a zero gradient neither agrees nor conflicts
    assert gms(one_zero).item() == 0.0  # 2·1·0 / (1 + 0)
    all_zero = torch.zeros(3, 3)
    assert gds(all_zero).item() == 0.0
    assert gms(all_zero).item() == 1.0  # equal (zero) magnitudes
    assert condition_number(all_zero).item() == math.inf
    assert torch.equal(gradient_norms(all_zero), torch.zeros(3))
    assert torch.equal(cosine_to_update(all_zero, torch.ones(3)), torch.zeros(3))
    # mixed: tasks 0 and 2 agree, task 1 is zero -> pairs (0,1), (1,2) count 0
    k = gram((1, 1), (0, 0), (2, 2))
    assert gds(k).item() == pytest.approx(2 * 1.0 / 6)


def test_cosine_to_update_matches_explicit_vectors():
    g = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [3.0, 1.0, -1.0]], dtype=torch.float64)
    alpha = torch.tensor([0.2, 1.5, 0.7], dtype=torch.float64)
    d = alpha @ g
    expected = torch.stack([torch.dot(gt, d) / (gt.norm() * d.norm()) for gt in g])
    torch.testing.assert_close(cosine_to_update(g @ g.T, alpha), expected)


def test_zero_update_gives_zero_cosine():
    k = gram((1, 0), (-1, 0))
    assert torch.equal(cosine_to_update(k, torch.tensor([1.0, 1.0], dtype=torch.float64)), torch.zeros(2, dtype=torch.float64))


def test_condition_number_by_hand_and_singular():
    k = torch.diag(torch.tensor([9.0, 1.0, 4.0], dtype=torch.float64))
    assert condition_number(k).item() == pytest.approx(3.0)
    assert condition_number(k, squared=True).item() == pytest.approx(9.0)
    assert condition_number(gram((1, 2), (2, 4))).item() == math.inf  # parallel gradients
    assert condition_number(torch.eye(4)).item() == pytest.approx(1.0)
    assert condition_number(gram((1, 0, 0), (0, 1, 0), (1, 1, 0))).item() == math.inf  # rank 2


def test_batched_gramians():
    torch.manual_seed(0)
    j = torch.randn(5, 3, 7, dtype=torch.float64)
    k = j @ j.transpose(-1, -2)
    for fn in (gds, gms, condition_number):
        batched = fn(k)
        assert batched.shape == (5,)
        torch.testing.assert_close(batched, torch.stack([fn(x) for x in k]))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="square"):
        gds(torch.ones(2, 3))
    with pytest.raises(ValueError, match="weights"):
        cosine_to_update(torch.eye(3), torch.ones(2))


@settings(max_examples=60, deadline=None)
@given(
    tasks=st.integers(2, 6),
    dim=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    spread=st.floats(0.0, 3.0),
)
def test_against_explicit_gradients(tasks, dim, seed, spread):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(tasks, dim, generator=gen, dtype=torch.float64)
    g = g * torch.logspace(0, spread, tasks, dtype=torch.float64)[:, None]
    k = g @ g.T
    norms = g.norm(dim=1)
    pairs = [(i, j) for i in range(tasks) for j in range(tasks) if i != j]
    cos = [torch.dot(g[i], g[j]) / (norms[i] * norms[j]) for i, j in pairs]
    beta = [2 * norms[i] * norms[j] / (norms[i] ** 2 + norms[j] ** 2) for i, j in pairs]
    torch.testing.assert_close(gds(k), torch.stack(cos).mean())
    torch.testing.assert_close(gms(k), torch.stack(beta).mean())
    torch.testing.assert_close(gradient_norms(k), norms)
    assert cosine_matrix(k).abs().max() <= 1.0
    ev = np.linalg.eigvalsh(k.numpy())
    kappa = condition_number(k).item()
    if ev[0] > 1e-10 * ev[-1]:
        assert kappa == pytest.approx(math.sqrt(ev[-1] / ev[0]), rel=1e-6)
    elif ev[0] <= tasks * np.finfo(np.float64).eps * ev[-1]:
        assert kappa == math.inf
