"""GrowthBook-compatible bucketing primitives.

A port of the hashing and bucketing functions of GrowthBook's SDKs (``hash``,
``getBucketRanges``, ``inRange``, ``chooseVariation``, ``inNamespace`` in
``packages/sdk-js/src/util.ts``), so that any assignment made here can be recomputed offline
with a GrowthBook SDK from ``(seed, unit id, hash version, weights, coverage, namespace)``.
Every function is pure.

A namespace ``(id, start, end)`` is GrowthBook's mutual-exclusion device: every unit gets one
hash per namespace id, ``gb_hash("__" + id, unit, 1)``, and experiments given disjoint
``[start, end)`` ranges of the same namespace never share a unit.

Strings are hashed over UTF-16 code units, as JavaScript's ``charCodeAt`` sees them: a
character outside the Basic Multilingual Plane (an emoji, say) counts as two units, a
surrogate pair. Lone surrogates, which a Python ``str`` can hold, hash as their own unit.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BucketRange",
    "Namespace",
    "choose_variation",
    "fnv1a32",
    "gb_hash",
    "get_bucket_ranges",
    "get_equal_weights",
    "in_namespace",
    "in_range",
    "namespace_hash",
]

BucketRange = tuple[float, float]
"""A half-open interval ``[start, end)`` of hash values in ``[0, 1)``."""

Namespace = tuple[str, float, float]
"""GrowthBook's ``(namespace id, start, end)``: the unit is in it when its namespace hash is in ``[start, end)``."""

_FNV32_OFFSET_BASIS = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF

# GrowthBook falls back to equal weights when the weights do not sum to 1 within this.
_WEIGHT_SUM_MIN = 0.99
_WEIGHT_SUM_MAX = 1.01


def fnv1a32(s: str, state: int = _FNV32_OFFSET_BASIS) -> int:
    """Return the 32-bit FNV-1a hash of ``s`` over its UTF-16 code units (0 <= h < 2**32).

    ``state`` continues a hash instead of starting a new one: ``fnv1a32(a + b) ==
    fnv1a32(b, fnv1a32(a))``, so a constant prefix (an experiment seed) is hashed once.
    """
    h = state
    if s.isascii():
        # An ASCII character is a single UTF-16 unit equal to its byte.
        for unit in s.encode("ascii"):
            h = ((h ^ unit) * _FNV32_PRIME) & _MASK32
        return h
    data = s.encode("utf-16-le", "surrogatepass")
    for lo, hi in zip(data[0::2], data[1::2], strict=True):
        h = ((h ^ (lo | (hi << 8))) * _FNV32_PRIME) & _MASK32
    return h


def gb_hash(seed: str, value: str, version: int = 2) -> float | None:
    """Return GrowthBook's bucket hash of ``value`` in ``[0, 1)``, or None for an unknown version.

    Version 2 (the default): ``(fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000``.
    Version 1 (legacy: 1,000 buckets, weaker seed mixing):
    ``(fnv1a32(value + seed) % 1000) / 1000``.
    """
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def get_equal_weights(num_variations: int) -> list[float]:
    """Return ``num_variations`` equal weights summing to 1 (empty when fewer than one)."""
    if num_variations < 1:
        return []
    return [1 / num_variations] * num_variations


def get_bucket_ranges(
    num_variations: int,
    coverage: float = 1.0,
    weights: Sequence[float] | None = None,
) -> list[BucketRange]:
    """Return one ``(start, end)`` range per variation, GrowthBook's ``getBucketRanges``.

    Variation ``i`` starts at the cumulative weight of the variations before it and spans
    ``coverage * weights[i]``, so raising coverage only extends ranges and never moves a unit
    between variations. ``coverage`` is clamped to ``[0, 1]``. ``weights`` default to equal;
    weights of the wrong length or not summing to 1 within 0.01 are replaced by equal weights
    (no error: validate weights before they get here, see ``config.py``).
    """
    coverage = min(max(coverage, 0.0), 1.0)
    equal = get_equal_weights(num_variations)
    chosen: Sequence[float] = equal if weights is None else weights
    if len(chosen) != num_variations:
        chosen = equal
    total = 0.0
    for w in chosen:  # left to right like JS reduce (Python >= 3.12 sum() compensates)
        total += w
    if total < _WEIGHT_SUM_MIN or total > _WEIGHT_SUM_MAX:
        chosen = equal
    ranges: list[BucketRange] = []
    cumulative = 0.0
    for w in chosen:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def in_range(n: float, rng: BucketRange) -> bool:
    """Return whether ``n`` lies in the half-open range ``[rng[0], rng[1])``."""
    return rng[0] <= n < rng[1]


def choose_variation(n: float, ranges: Sequence[BucketRange]) -> int:
    """Return the index of the first range containing ``n``, or -1 when none does."""
    for i, rng in enumerate(ranges):
        if rng[0] <= n < rng[1]:
            return i
    return -1


def namespace_hash(namespace_id: str, user_id: str) -> float:
    """Return the unit's position in namespace ``namespace_id``: ``gb_hash("__" + id, user_id, 1)``.

    One value in ``[0, 1)`` (1,000 buckets, hash version 1 as in every GrowthBook SDK) shared by
    all experiments of the namespace, so their ranges partition the units.
    """
    return (fnv1a32(user_id + "__" + namespace_id) % 1000) / 1000


def in_namespace(user_id: str, namespace: Namespace) -> bool:
    """Return whether ``user_id`` is in ``namespace``, GrowthBook's ``inNamespace``.

    True when ``start <= namespace_hash(id, user_id) < end``.
    """
    namespace_id, start, end = namespace
    return start <= namespace_hash(namespace_id, user_id) < end
