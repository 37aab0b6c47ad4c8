"""overlap@k and RBO on hand-computed cases."""

from __future__ import annotations

import pytest

from ranking.agreement import overlap_at_k, rank_biased_overlap


def test_overlap_at_k() -> None:
    assert overlap_at_k("abcde", "abxyz", 5) == pytest.approx(0.4)
    assert overlap_at_k("abc", "cba", 3) == 1.0
    assert overlap_at_k("ab", "cd", 10) == 0.0
    assert overlap_at_k("", "", 10) == 1.0


def test_rbo_is_one_for_identical_and_zero_for_disjoint_lists() -> None:
    assert rank_biased_overlap(list("abcdefghij"), list("abcdefghij")) == pytest.approx(1.0)
    assert rank_biased_overlap(list("abcde"), list("vwxyz")) == 0.0
    assert rank_biased_overlap([], []) == 1.0


def test_rbo_hand_computed_two_item_swap() -> None:
    # a = [1, 2], b = [2, 1], p = 0.5: X1 = 0, X2 = 2
    # RBO_ext = (X2/2) p^2 + (1-p)/p * (X1/1 p + X2/2 p^2) = 0.25 + 1 * (0 + 0.25) = 0.5
    assert rank_biased_overlap([1, 2], [2, 1], p=0.5) == pytest.approx(0.5)


def test_rbo_is_top_weighted() -> None:
    base = list(range(20))
    swap_top = [1, 0, *base[2:]]
    swap_bottom = [*base[:18], 19, 18]
    assert rank_biased_overlap(base, swap_bottom) > rank_biased_overlap(base, swap_top)
    assert rank_biased_overlap(base, swap_top) == pytest.approx(rank_biased_overlap(swap_top, base))
