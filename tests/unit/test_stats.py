"""The shared statistics: nearest-rank percentiles, summaries, Zipf weights, strict JSON."""

from __future__ import annotations

import itertools
import math

import pytest

from loadtests.stats import jsonable, percentile, summarize, zipf_probabilities


def test_percentile_is_nearest_rank_and_never_interpolates() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert percentile([1.0, 10.0], 75) == 10.0  # a value some request saw, not 7.75
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_p99_of_a_small_sample_is_its_worst_tail_value() -> None:
    values = [1.0] * 98 + [50.0, 60.0]
    assert percentile(values, 99) == 50.0
    assert percentile(values, 99.9) == 60.0


def test_summarize_reports_count_mean_percentiles_and_max() -> None:
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s["n"] == 4
    assert s["mean"] == 2.5
    assert s["p50"] == 2.0
    assert s["p99"] == 4.0
    assert s["p999"] == 4.0
    assert s["max"] == 4.0
    empty = summarize([])
    assert empty["n"] == 0 and math.isnan(empty["p99"]) and math.isnan(empty["mean"])


def test_zipf_probabilities_are_normalised_and_decreasing() -> None:
    p = zipf_probabilities(1000, 1.0)
    assert math.isclose(sum(p), 1.0)
    assert all(a > b for a, b in itertools.pairwise(p))
    assert math.isclose(p[0] / p[9], 10.0)
    assert zipf_probabilities(4, 0.0) == [0.25] * 4
    with pytest.raises(ValueError):
        zipf_probabilities(0, 1.0)


def test_jsonable_turns_nan_into_null() -> None:
    assert jsonable({"a": [math.nan, 1.0], "b": (math.inf,)}) == {"a": [None, 1.0], "b": [None]}
