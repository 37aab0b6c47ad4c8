"""Agreement between two ranked lists: overlap@k and rank-biased overlap (RBO).

Pure functions over sequences of hashable ids, shared by in-server shadow scoring and the
offline replay diff.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def overlap_at_k(a: Sequence[Hashable], b: Sequence[Hashable], k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k (1.0 when both are empty)."""
    if k <= 0:
        raise ValueError("k must be positive")
    top_a, top_b = set(a[:k]), set(b[:k])
    if not top_a and not top_b:
        return 1.0
    return len(top_a & top_b) / k


def rank_biased_overlap(a: Sequence[Hashable], b: Sequence[Hashable], p: float = 0.9) -> float:
    """Extrapolated RBO (Webber, Moffat & Zobel 2010, eq. 32) evaluated to depth max(len(a), len(b)).

    1.0 for identical lists, 0.0 for disjoint ones; ``p`` is the persistence (top-weightedness):
    with p = 0.9 the first 10 ranks carry about 86 % of the weight.
    """
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    depth = max(len(a), len(b))
    if depth == 0:
        return 1.0
    seen_a: set[Hashable] = set()
    seen_b: set[Hashable] = set()
    overlap = 0
    weighted = 0.0
    for d in range(1, depth + 1):
        x = a[d - 1] if d <= len(a) else None
        y = b[d - 1] if d <= len(b) else None
        if x is not None and y is not None and x == y:
            overlap += 1
        else:
            if x is not None:
                overlap += x in seen_b
                seen_a.add(x)
            if y is not None:
                overlap += y in seen_a
                seen_b.add(y)
        weighted += (overlap / d) * p**d
    return float((overlap / depth) * p**depth + ((1 - p) / p) * weighted)
