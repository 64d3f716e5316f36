"""Ranking similarity (Mao et al., IEEE Access 2024, Eq. 11) on known rankings, ties and
Kendall's tau."""

import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from repmtl.diagnostics import ranking_similarity


def test_identity_and_reversal():
    same = ranking_similarity([0.1, 0.5, 0.3, 0.9], [1, 5, 3, 9])
    assert same.similarity == 1.0 and same.symmetric == 0.5 and same.pairs == 6
    rev = ranking_similarity([1, 2, 3, 4, 5], [50, 40, 30, 20, 10])
    assert rev.similarity == 0.0 and rev.symmetric == 0.5


def test_worked_mixed_example():
    # a orders 1<2<3<4; b swaps the middle two: of the 6 pairs only (2, 3) disagrees
    r = ranking_similarity([1, 2, 3, 4], [1, 3, 2, 4])
    assert r.similarity == pytest.approx(5 / 6)
    assert r.symmetric == pytest.approx(1 / 3)
    # b = (1, 4, 2, 3): pairs 01 ✓, 02 ✓, 03 ✓, 12 ✗, 13 ✗, 23 ✓ -> 4/6
    r = ranking_similarity([1, 2, 3, 4], [1, 4, 2, 3])
    assert r.similarity == pytest.approx(4 / 6) and r.symmetric == pytest.approx(1 / 6)


def test_ties():
    a, b = [1, 1, 2], [1, 2, 3]  # pair (0, 1) tied in a only; the other two agree
    assert ranking_similarity(a, b).similarity == pytest.approx(2.5 / 3)
    assert ranking_similarity(a, b, ties="literal").similarity == pytest.approx(2.5 / 3)
    drop = ranking_similarity(a, b, ties="drop")
    assert drop.similarity == 1.0 and drop.pairs == 2
    both = ([1, 1], [5, 5])  # tied in both
    assert ranking_similarity(*both).similarity == 0.5
    assert ranking_similarity(*both, ties="literal").similarity == 1.0
    assert ranking_similarity(*both, ties="drop").similarity == 0.5


def test_degenerate_and_bad_inputs():
    assert ranking_similarity([3.0], [1.0]).similarity == 0.5
    assert ranking_similarity([], []).pairs == 0
    with pytest.raises(ValueError, match="same items"):
        ranking_similarity([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-finite"):
        ranking_similarity([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="ties"):
        ranking_similarity([1, 2], [1, 2], ties="bogus")


scores = st.lists(st.integers(-5, 5), min_size=2, max_size=12)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_reversal_symmetry_and_kendall(data):
    a = data.draw(scores)
    b = data.draw(st.lists(st.integers(-5, 5), min_size=len(a), max_size=len(a)))
    s = ranking_similarity(a, b).similarity
    assert ranking_similarity(a, [-x for x in b]).similarity == pytest.approx(1 - s)
    assert ranking_similarity(b, a).similarity == pytest.approx(s)
    if len(set(a)) == len(a) and len(set(b)) == len(b):  # no ties: S = (1 + τ)/2
        tau = scipy.stats.kendalltau(a, b).statistic
        assert s == pytest.approx((1 + tau) / 2)
