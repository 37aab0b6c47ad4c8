"""The scoring cascade: a light model scores every candidate, the request's model only its best rows."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from features.schema import N_RANKER_FEATURES, RANKER_FEATURES, RANKER_INPUT_NAME
from models.build import light_model
from models.linear_ranker import linear_ranker
from ranking.scorers.onnx_ranker import OnnxRankerScorer
from ranking.types import RankingParams, Surface
from tests.unit import fakes

LIGHT_FEATURE, FULL_FEATURE = RANKER_FEATURES.index("retrieval_score"), RANKER_FEATURES.index("user_item_dot")


def _session(feature: str) -> ort.InferenceSession:
    return ort.InferenceSession(linear_ranker({feature: 1.0}), providers=["CPUExecutionProvider"])


def _scores(
    rows: np.ndarray, *, cascade_size: int, model: str | None = None, light: str | None = "light"
) -> np.ndarray:
    sessions = {"full": _session("user_item_dot"), "light": _session("retrieval_score")}
    with ThreadPoolExecutor(max_workers=1) as executor:
        scorer = OnnxRankerScorer(
            sessions, dict.fromkeys(sessions, RANKER_INPUT_NAME), "full", executor, light_version=light
        )
        query = fakes.query(Surface.HOME, params=RankingParams(cascade_size=cascade_size, model_version=model))
        return asyncio.run(scorer.score(query, rows))


def _rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.zeros((n, N_RANKER_FEATURES), dtype=np.float32)
    rng = np.random.default_rng(seed)
    rows[:, LIGHT_FEATURE] = rng.permutation(n)
    rows[:, FULL_FEATURE] = rng.permutation(n)
    return rows


def test_the_light_models_best_rows_come_first_in_the_full_models_order_then_the_rest_by_the_light_model() -> None:
    rows = _rows(40)
    scores = _scores(rows, cascade_size=10)
    order = np.argsort(-scores, kind="stable")
    light, full = rows[:, LIGHT_FEATURE], rows[:, FULL_FEATURE]
    best = set(np.argsort(-light)[:10].tolist())
    assert set(order[:10].tolist()) == best
    assert full[order[:10]].tolist() == sorted(full[list(best)].tolist(), reverse=True)
    assert light[order[10:]].tolist() == sorted(light[order[10:]].tolist(), reverse=True)


@pytest.mark.parametrize(
    ("cascade_size", "model", "light"),
    [(0, None, "light"), (40, None, "light"), (100, None, "light"), (10, "light", "light"), (10, None, None)],
)
def test_without_a_cascade_the_requests_model_scores_every_row(
    cascade_size: int, model: str | None, light: str | None
) -> None:
    rows = _rows(40, seed=1)
    expected = rows[:, LIGHT_FEATURE if model == "light" else FULL_FEATURE]
    np.testing.assert_allclose(_scores(rows, cascade_size=cascade_size, model=model, light=light), expected)


def test_an_unknown_light_model_is_refused() -> None:
    with pytest.raises(ValueError, match="light model 'tiny'"):
        OnnxRankerScorer({"full": _session("user_item_dot")}, {"full": RANKER_INPUT_NAME}, "full", None, "tiny")  # type: ignore[arg-type]


def test_the_build_picks_the_model_with_fewest_trees_as_the_light_model() -> None:
    assert light_model((("lgbm-v3", 300), ("lgbm-v3-lite", 60))) == "lgbm-v3-lite"
    assert light_model((("only", 100),)) is None
    assert light_model((("small-default", 10), ("big", 300))) is None
