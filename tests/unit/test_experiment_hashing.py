"""GrowthBook-compatible hashing and bucketing.

Published vectors: GrowthBook's SDK conformance suite, ``packages/sdk-js/test/cases.json`` in
github.com/growthbook/growthbook (specVersion 0.5.4, commit
021bf498f75c8491c156184ca1b3a1fbafa1d64e; identical "hash"/"getBucketRange" sections in
growthbook-python's tests/cases.json, specVersion 0.7.1), keys "hash", "getBucketRange",
"chooseVariation" and "inNamespace". That suite has no non-ASCII ids, so NON_ASCII_VECTORS were computed with
the JS SDK's ``hashFnv32a``/``hash`` (``str.charCodeAt`` loop, packages/sdk-js/src/util.ts)
run in Node.js, and are also cross-checked against the ``growthbook`` PyPI package below.
"""

from __future__ import annotations

import random

import pytest

from serving.experiments.hashing import (
    choose_variation,
    fnv1a32,
    gb_hash,
    get_bucket_ranges,
    get_equal_weights,
    in_namespace,
    in_range,
    namespace_hash,
)

# cases.json "hash": [seed, value, version, expected]
GB_HASH_VECTORS: list[tuple[str, str, int, float | None]] = [
    ("", "a", 1, 0.22),
    ("", "b", 1, 0.077),
    ("b", "a", 1, 0.946),
    ("ef", "d", 1, 0.652),
    ("asdf", "8952klfjas09ujk", 1, 0.549),
    ("", "123", 1, 0.011),
    ("", '___)((*":&', 1, 0.563),
    ("seed", "a", 2, 0.0505),
    ("seed", "b", 2, 0.2696),
    ("foo", "ab", 2, 0.2575),
    ("foo", "def", 2, 0.2019),
    ("89123klj", "8952klfjas09ujkasdf", 2, 0.124),
    ("90850943850283058242805", "123", 2, 0.7516),
    ("()**(%$##$%#$#", '___)((*":&', 2, 0.0128),
    ("abc", "def", 99, None),
]

# cases.json "getBucketRange": (numVariations, coverage, weights) -> ranges
GB_BUCKET_RANGE_VECTORS: list[tuple[str, tuple[int, float, list[float] | None], list[tuple[float, float]]]] = [
    ("normal 50/50", (2, 1, None), [(0, 0.5), (0.5, 1)]),
    ("reduced coverage", (2, 0.5, None), [(0, 0.25), (0.5, 0.75)]),
    ("zero coverage", (2, 0, None), [(0, 0), (0.5, 0.5)]),
    ("4 variations", (4, 1, None), [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]),
    ("uneven weights", (2, 1, [0.4, 0.6]), [(0, 0.4), (0.4, 1)]),
    ("uneven weights, 3 variations", (3, 1, [0.2, 0.3, 0.5]), [(0, 0.2), (0.2, 0.5), (0.5, 1)]),
    (
        "uneven weights, reduced coverage, 3 variations",
        (3, 0.2, [0.2, 0.3, 0.5]),
        [(0, 0.04), (0.2, 0.26), (0.5, 0.6)],
    ),
    ("negative coverage", (2, -0.2, None), [(0, 0), (0.5, 0.5)]),
    ("coverage above 1", (2, 1.5, None), [(0, 0.5), (0.5, 1)]),
    ("weights sum below 1", (2, 1, [0.4, 0.1]), [(0, 0.5), (0.5, 1)]),
    ("weights sum above 1", (2, 1, [0.7, 0.6]), [(0, 0.5), (0.5, 1)]),
    (
        "weights.length not equal to num variations",
        (4, 1, [0.4, 0.4, 0.2]),
        [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)],
    ),
    ("weights sum almost equals 1", (2, 1, [0.4, 0.5999]), [(0, 0.4), (0.4, 0.9999)]),
]

_EVEN = [(0.0, 0.5), (0.5, 1.0)]
_REDUCED = [(0.0, 0.25), (0.5, 0.75)]
# cases.json "chooseVariation": (name, n, ranges, expected index)
GB_CHOOSE_VARIATION_VECTORS: list[tuple[str, float, list[tuple[float, float]], int]] = [
    ("even range, 0.2", 0.2, _EVEN, 0),
    ("even range, 0.4", 0.4, _EVEN, 0),
    ("even range, 0.6", 0.6, _EVEN, 1),
    ("even range, 0.8", 0.8, _EVEN, 1),
    ("even range, 0", 0.0, _EVEN, 0),
    ("even range, 0.5", 0.5, _EVEN, 1),
    ("reduced range, 0.2", 0.2, _REDUCED, 0),
    ("reduced range, 0.4", 0.4, _REDUCED, -1),
    ("reduced range, 0.6", 0.6, _REDUCED, 1),
    ("reduced range, 0.8", 0.8, _REDUCED, -1),
    ("reduced range, 0.25", 0.25, _REDUCED, -1),
    ("reduced range, 0.5", 0.5, _REDUCED, 1),
    ("zero range", 0.5, [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0)], 2),
]

# cases.json "inNamespace" (commit 021bf498f75c8491c156184ca1b3a1fbafa1d64e): (name, id, namespace, expected)
GB_IN_NAMESPACE_VECTORS: list[tuple[str, str, tuple[str, float, float], bool]] = [
    ("user 1, namespace1, 1", "1", ("namespace1", 0, 0.4), False),
    ("user 1, namespace1, 2", "1", ("namespace1", 0.4, 1), True),
    ("user 1, namespace2, 1", "1", ("namespace2", 0, 0.4), False),
    ("user 1, namespace2, 2", "1", ("namespace2", 0.4, 1), True),
    ("user 2, namespace1, 1", "2", ("namespace1", 0, 0.4), False),
    ("user 2, namespace1, 2", "2", ("namespace1", 0.4, 1), True),
    ("user 2, namespace2, 1", "2", ("namespace2", 0, 0.4), False),
    ("user 2, namespace2, 2", "2", ("namespace2", 0.4, 1), True),
    ("user 3, namespace1, 1", "3", ("namespace1", 0, 0.4), False),
    ("user 3, namespace1, 2", "3", ("namespace1", 0.4, 1), True),
    ("user 3, namespace2, 1", "3", ("namespace2", 0, 0.4), True),
    ("user 3, namespace2, 2", "3", ("namespace2", 0.4, 1), False),
    ("user 4, namespace1, 1", "4", ("namespace1", 0, 0.4), False),
    ("user 4, namespace1, 2", "4", ("namespace1", 0.4, 1), True),
    ("user 4, namespace2, 1", "4", ("namespace2", 0, 0.4), True),
    ("user 4, namespace2, 2", "4", ("namespace2", 0.4, 1), False),
]

# (seed, value, fnv1a32(value), v1 hash, v2 hash) from the JS SDK algorithm in Node.js.
NON_ASCII_VECTORS: list[tuple[str, str, int, float, float]] = [
    ("", "ü", 2030796987, 0.987, 0.1356),
    ("home-ranker-lite", "Zoë", 2030543767, 0.009, 0.0233),
    ("seed", "用户-42", 1049111761, 0.064, 0.1142),
    ("seed", "😀", 3409036472, 0.429, 0.4346),  # non-BMP: one surrogate pair
    ("np-blend", "user-🎵-7", 76087710, 0.742, 0.5761),
    ("ñandú", "ñandú", 1308677765, 0.221, 0.0452),
    ("", "İstanbul", 2214880342, 0.342, 0.5559),
    ("exp", "𝄞clef", 2503164315, 0.402, 0.7579),
]


@pytest.mark.parametrize(("seed", "value", "version", "expected"), GB_HASH_VECTORS)
def test_gb_hash_matches_growthbook_published_vectors(
    seed: str, value: str, version: int, expected: float | None
) -> None:
    assert gb_hash(seed, value, version) == expected


def test_gb_hash_defaults_to_version_2() -> None:
    assert gb_hash("seed", "a") == 0.0505


@pytest.mark.parametrize(("seed", "value", "fnv", "v1", "v2"), NON_ASCII_VECTORS)
def test_non_ascii_ids_hash_over_utf16_code_units_like_js(
    seed: str, value: str, fnv: int, v1: float, v2: float
) -> None:
    assert fnv1a32(value) == fnv
    assert gb_hash(seed, value, 1) == v1
    assert gb_hash(seed, value, 2) == v2


@pytest.mark.parametrize(
    ("text", "expected"),
    # Canonical FNV-1a 32 values (Noll's test suite); ASCII bytes equal UTF-16 code units.
    [("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968)],
)
def test_fnv1a32_matches_reference_values_for_ascii(text: str, expected: int) -> None:
    assert fnv1a32(text) == expected


def _fnv_over_units(units: list[int]) -> int:
    h = 0x811C9DC5
    for u in units:
        h = ((h ^ u) * 0x01000193) % 2**32
    return h


def test_non_bmp_character_hashes_as_its_surrogate_pair() -> None:
    assert fnv1a32("😀") == _fnv_over_units([0xD83D, 0xDE00])
    assert fnv1a32("a😀b") == _fnv_over_units([0x61, 0xD83D, 0xDE00, 0x62])
    # A lone surrogate (possible in a Python str) hashes as that single unit, as in JS.
    assert fnv1a32("\ud83d") == _fnv_over_units([0xD83D])


@pytest.mark.parametrize(("name", "args", "expected"), GB_BUCKET_RANGE_VECTORS)
def test_get_bucket_ranges_matches_growthbook_published_vectors(
    name: str, args: tuple[int, float, list[float] | None], expected: list[tuple[float, float]]
) -> None:
    num, coverage, weights = args
    got = get_bucket_ranges(num, coverage, weights)
    assert len(got) == len(expected), name
    for (start, end), (exp_start, exp_end) in zip(got, expected, strict=True):
        assert start == pytest.approx(exp_start, abs=1e-9), name
        assert end == pytest.approx(exp_end, abs=1e-9), name


def test_get_bucket_ranges_defaults_to_equal_weights_and_full_coverage() -> None:
    assert get_bucket_ranges(2) == [(0.0, 0.5), (0.5, 1.0)]
    assert get_equal_weights(0) == []
    assert get_bucket_ranges(0) == []


@pytest.mark.parametrize(("name", "n", "ranges", "expected"), GB_CHOOSE_VARIATION_VECTORS)
def test_choose_variation_matches_growthbook_published_vectors(
    name: str, n: float, ranges: list[tuple[float, float]], expected: int
) -> None:
    assert choose_variation(n, ranges) == expected, name


@pytest.mark.parametrize(("name", "user_id", "namespace", "expected"), GB_IN_NAMESPACE_VECTORS)
def test_in_namespace_matches_growthbook_published_vectors(
    name: str, user_id: str, namespace: tuple[str, float, float], expected: bool
) -> None:
    assert in_namespace(user_id, namespace) is expected, name


def test_namespace_hash_is_a_version_1_hash_seeded_with_double_underscore_and_the_id() -> None:
    for user_id in ["1", "user-42", "Zoë", "😀", ""]:
        for namespace_id in ["namespace1", "home-ranking", "ñandú"]:
            assert namespace_hash(namespace_id, user_id) == gb_hash("__" + namespace_id, user_id, 1)


def test_in_namespace_is_half_open() -> None:
    n = namespace_hash("ns", "user-1")
    assert in_namespace("user-1", ("ns", n, n + 0.001))
    assert not in_namespace("user-1", ("ns", n - 0.001, n))
    assert not in_namespace("user-1", ("ns", n, n))


def test_fnv1a32_state_continues_a_hash_across_a_concatenation() -> None:
    for a, b in [("seed", "user-1"), ("", "x"), ("ñandú", "😀b"), ("a\ud83d", "\ude00z")]:
        assert fnv1a32(b, fnv1a32(a)) == fnv1a32(a + b)


def test_in_range_is_half_open() -> None:
    assert in_range(0.2, (0.2, 0.5))
    assert not in_range(0.5, (0.2, 0.5))
    assert not in_range(0.3, (0.3, 0.3))


@pytest.mark.parametrize("weights", [None, [0.1, 0.9], [0.2, 0.3, 0.5]])
def test_coverage_ramp_never_moves_a_user_between_arms(weights: list[float] | None) -> None:
    num = 2 if weights is None else len(weights)
    ramp = [get_bucket_ranges(num, c, weights) for c in (0.05, 0.2, 0.6, 1.0)]
    rng = random.Random(7)
    for _ in range(3000):
        n = gb_hash("ramp", f"user-{rng.getrandbits(40)}", 2)
        assert n is not None
        arms = [choose_variation(n, ranges) for ranges in ramp]
        # Full coverage puts everyone in an arm; from the first coverage at which a user is
        # in, they stay in that same arm at every higher coverage.
        first = next(k for k, arm in enumerate(arms) if arm != -1)
        assert arms[first:] == [arms[first]] * (len(arms) - first)


def _random_ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabets = [
        "abcdefghijklmnopqrstuvwxyz0123456789-_",
        "äöüßéèñçøåœ",
        "用户音乐艺术家",
        "😀🎵🎸𝄞🔥",
    ]
    ids = []
    for i in range(count):
        chars = "".join(rng.choice(alphabets[: 1 + i % len(alphabets)]) for _ in range(24))
        ids.append(chars[: rng.randint(1, 24)])
    return ids


def test_matches_growthbook_python_sdk_on_many_ids() -> None:
    import growthbook.core as gb_core  # dev dependency: independent implementation

    seeds = ["", "home-ranker-lite", "np-blend", "ñandú", "🎵"]
    for i, value in enumerate(_random_ids(4000, seed=11)):
        seed = seeds[i % len(seeds)]
        assert fnv1a32(value) == gb_core.fnv1a32(value)
        for version in (1, 2):
            n = gb_hash(seed, value, version)
            assert n == gb_core.gbhash(seed, value, version)
            assert n is not None
            ranges = get_bucket_ranges(3, 0.8, [0.2, 0.3, 0.5])
            assert choose_variation(n, ranges) == gb_core.chooseVariation(n, ranges)
        namespace = (seeds[(i + 1) % len(seeds)], 0.25, 0.7)
        assert in_namespace(value, namespace) == gb_core.inNamespace(value, namespace)


@pytest.mark.parametrize(
    ("num", "coverage", "weights"),
    [(2, 1.0, None), (3, 0.37, [0.2, 0.3, 0.5]), (4, 0.5, [0.25, 0.25, 0.25, 0.3]), (2, 2.0, None)],
)
def test_bucket_ranges_match_growthbook_python_sdk(num: int, coverage: float, weights: list[float] | None) -> None:
    import growthbook.core as gb_core

    assert get_bucket_ranges(num, coverage, weights) == gb_core.getBucketRanges(num, coverage, weights)
