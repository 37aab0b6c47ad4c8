"""LightGBM → ONNX: float32-exact thresholds (the cause of the old mismatch) and determinism."""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np
import onnxruntime as ort
import pytest

from features.schema import N_RANKER_FEATURES, RANKER_INPUT_NAME
from models.ranker import RankerConfig, RankerDataset, TrainingError, fit_booster, snap_thresholds, train_ranker


def _adjacent_float32_data() -> tuple[np.ndarray, np.ndarray]:
    """One feature taking two adjacent float32 values: LightGBM splits at their float64 midpoint,
    which rounds up to the larger value in float32."""
    low = np.float32(0.13702622)
    high = np.nextafter(low, np.float32(1.0))
    x = np.zeros((100, N_RANKER_FEATURES), dtype=np.float32)
    x[:50, 7], x[50:, 7] = low, high
    return x, np.repeat([0.0, 1.0], 50)


def _onnx_predict(booster: Any, x: np.ndarray) -> np.ndarray:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnxmltools.convert_lightgbm(
        booster, initial_types=[(RANKER_INPUT_NAME, FloatTensorType([None, N_RANKER_FEATURES]))], target_opset=15
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {RANKER_INPUT_NAME: x})[0]).reshape(-1)


def test_a_float64_threshold_between_adjacent_float32_values_breaks_onnx_until_snapped() -> None:
    x, y = _adjacent_float32_data()
    params = {"objective": "regression", "num_leaves": 2, "min_data_in_leaf": 1, "min_data_in_bin": 1, "verbosity": -1}
    booster = lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=1)
    threshold = booster.dump_model()["tree_info"][0]["tree_structure"]["threshold"]
    assert float(np.float32(threshold)) == float(x[50, 7]) > threshold  # rounds up onto a real value
    assert np.abs(_onnx_predict(booster, x) - booster.predict(x)).max() > 0.05  # the old bug

    snapped = snap_thresholds(booster)
    np.testing.assert_array_equal(snapped.predict(x), booster.predict(x))
    np.testing.assert_allclose(_onnx_predict(snapped, x), booster.predict(x), atol=1e-6)


def _dataset(seed: int = 0, queries: int = 60, rows: int = 30) -> RankerDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(queries * rows, N_RANKER_FEATURES)).astype(np.float32)
    x[:, 5] = np.round(x[:, 5], 1)  # repeated values, like item statistics
    score = x[:, 0] + 0.5 * x[:, 5] + rng.normal(scale=0.5, size=x.shape[0])
    labels = np.zeros(x.shape[0], dtype=np.int32)
    for q in range(queries):
        block = slice(q * rows, (q + 1) * rows)
        labels[block][np.argsort(-score[block])[:3]] = 1
    return RankerDataset(features=x, labels=labels, groups=np.full(queries, rows, dtype=np.int64))


def test_training_is_deterministic_and_the_onnx_export_matches() -> None:
    config = RankerConfig(min_child_samples=20, threads=2)
    first = train_ranker(_dataset(), version="m", n_trees=30, config=config)
    second = train_ranker(_dataset(), version="m", n_trees=30, config=config)
    assert first.model.model_to_string() == second.model.model_to_string()
    assert first.onnx == second.onnx
    x = _dataset(seed=5).features
    session = ort.InferenceSession(first.onnx, providers=["CPUExecutionProvider"])
    got = np.asarray(session.run(None, {RANKER_INPUT_NAME: x})[0]).reshape(-1)
    np.testing.assert_allclose(got, first.model.predict(x), atol=1e-4)


def test_graded_labels_are_accepted_and_all_negative_data_is_refused() -> None:
    data = _dataset()
    graded = RankerDataset(data.features, data.labels * 3, data.groups)
    assert fit_booster(graded, 5, RankerConfig(min_child_samples=20)).num_trees() == 5
    negatives = RankerDataset(data.features, np.zeros_like(data.labels), data.groups)
    with pytest.raises(TrainingError, match="no ranker training query"):
        fit_booster(negatives, 5, RankerConfig())
