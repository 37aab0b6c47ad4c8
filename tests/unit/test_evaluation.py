"""Ranking metrics on hand-computed examples, and the metrics table."""

from __future__ import annotations

import math

import pytest

from models.evaluation import format_metrics_table
from models.metrics import ndcg_at_k, recall_at_k


def test_ndcg_is_one_when_relevant_items_lead_the_ranking() -> None:
    assert ndcg_at_k([3, 5, 1, 2], {3, 5}, k=10) == pytest.approx(1.0)


def test_ndcg_discounts_relevant_item_by_log2_of_its_position() -> None:
    # One relevant item at rank 3 (0-based 2): DCG = 1/log2(4) = 0.5, IDCG = 1.
    assert ndcg_at_k([9, 8, 7, 6], {7}, k=10) == pytest.approx(0.5)


def test_ndcg_with_two_relevant_items_matches_hand_computation() -> None:
    # Relevant at ranks 1 and 3: DCG = 1 + 1/2; IDCG = 1 + 1/log2(3).
    expected = (1 + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k([1, 2, 3], {1, 3}, k=3) == pytest.approx(expected)


def test_ndcg_ignores_relevant_items_below_the_cutoff() -> None:
    assert ndcg_at_k([1, 2, 3], {3}, k=2) == 0.0
    # Ideal DCG is capped at k positions even with more relevant items than k.
    assert ndcg_at_k([1, 2], {1, 2, 3, 4}, k=2) == pytest.approx(1.0)


def test_metrics_are_zero_without_relevant_items() -> None:
    assert ndcg_at_k([1, 2], set(), k=10) == 0.0
    assert recall_at_k([1, 2], set(), k=10) == 0.0


def test_recall_counts_share_of_relevant_items_in_top_k() -> None:
    assert recall_at_k([1, 2, 3, 4], {2, 4, 9}, k=2) == pytest.approx(1 / 3)
    assert recall_at_k([1, 2, 3, 4], {2, 4, 9}, k=4) == pytest.approx(2 / 3)


def test_metrics_table_lists_the_served_ranker_first_then_baselines_and_the_ratio() -> None:
    evaluation = {
        "protocol": {"n_users": 10, "limit": 100},
        "home": {"popularity": {"ndcg@10": 0.1, "recall@100": 0.2}, "ranker": {"ndcg@10": 0.25, "recall@100": 0.5}},
        "now_playing": {
            "ranker": {"ndcg@10": 0.2, "seed_precision@10": None, "seed_ndcg_skipped": 3.0},
            "ease": {"ndcg@10": 0.1},
        },
        "vs_best_baseline": {
            "home": {"ndcg@10": {"best_baseline": "popularity", "ratio": 2.5}},
            "now_playing": {"seed_ndcg@10": {"best_baseline": "ease", "ratio": None}},
        },
        "default_model": "lgbm-v1",
    }
    lines = format_metrics_table(evaluation).splitlines()
    assert lines[0].split() == ["surface", "method", "ndcg@10", "recall@100"]
    assert lines[2].split() == ["home", "ranker", "0.2500", "0.5000"]
    assert lines[3].split() == ["home", "popularity", "0.1000", "0.2000"]
    assert lines[7].split()[:4] == ["now_playing", "ranker", "0.2000", "-"]  # a metric not measured
    assert "served / best baseline, home: ndcg@10 2.500x popularity" in lines
    assert "served / best baseline, now_playing: seed_ndcg@10 - ease" in lines
    assert "seed_ndcg skipped 3 NP queries" in lines[-1]
