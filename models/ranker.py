"""The LightGBM ranker: training (deterministic), float32-exact thresholds, ONNX export (checked).

Why thresholds are snapped: LightGBM stores split thresholds as float64 and compares float64
feature values; ONNX's ``TreeEnsembleRegressor`` stores them as float32 and compares the float32
input. A threshold ``t`` that lies strictly between two float32 numbers rounds to the upper one
``b`` about half the time, and then a feature value of exactly ``b`` goes right in LightGBM
(``b > t``) but left in ONNX (``b <= float32(t) = b``). Feature values repeat exactly across rows
(an item's statistics, norms), so on small catalogs some rows sit exactly on such a threshold —
that was the cause of "ONNX output differs from LightGBM predict (max abs diff 0.0418)" on the
1500-item synthetic build (feature ``item_vector_norm``, one row, one tree). ``snap_thresholds``
replaces every numerical threshold by the largest float32 ``<= t``: for every float32 input ``x``,
``x <= t`` iff ``x <= snapped(t)``, so the snapped booster predicts exactly what the original
predicts on float32 features, and ONNX (which then stores the threshold exactly) agrees with it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import EncoreError
from features.schema import N_RANKER_FEATURES, RANKER_INPUT_NAME

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

DEFAULT_MODEL = "lgbm-v3"
LITE_MODEL = "lgbm-v3-lite"
#: Model versions trained by default: version -> number of trees (the first is the default model).
MODEL_TREES: dict[str, int] = {DEFAULT_MODEL: 300, LITE_MODEL: 60}
#: ONNX must reproduce LightGBM to this absolute/relative tolerance (float32 leaf sums).
ONNX_TOLERANCE = 1e-4


class TrainingError(EncoreError):
    """Training produced something unusable (no labelled query, ONNX output differs from LightGBM)."""


@dataclass(frozen=True)
class RankerConfig:
    """LightGBM ``lambdarank`` settings (chosen on the label part; see the build's manifest)."""

    num_leaves: int = 7
    min_child_samples: int = 500
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.9
    seed: int = 0
    threads: int = 2

    def summary(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("threads")
        return out


@dataclass(frozen=True)
class RankerDataset:
    """LightGBM ranking data: rows grouped by query, in order. Labels are graded (0 = negative)."""

    features: F32  # [rows, N_RANKER_FEATURES]
    labels: npt.NDArray[np.int32]  # [rows]
    groups: I64  # [queries] rows per query

    @property
    def n_queries(self) -> int:
        return int(self.groups.size)

    @staticmethod
    def concat(parts: list[RankerDataset]) -> RankerDataset:
        if not parts:
            raise TrainingError("no ranker training query has a positive candidate; data too small or sparse")
        return RankerDataset(
            features=np.concatenate([p.features for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            groups=np.concatenate([p.groups for p in parts]),
        )


@dataclass(frozen=True)
class TrainedRanker:
    version: str
    model: Any  # lightgbm.Booster with float32-exact thresholds
    onnx: bytes
    n_trees: int


_THRESHOLD_LINE = re.compile(r"^threshold=(.*)$", re.MULTILINE)
_TREE_SIZES_LINE = re.compile(r"^tree_sizes=.*\n", re.MULTILINE)


def _snap(value: str) -> str:
    t = float(value)
    snapped = np.float32(t)
    if float(snapped) > t:
        snapped = np.nextafter(snapped, np.float32(-np.inf))
    return repr(float(snapped))


def snap_thresholds(booster: Any) -> Any:
    """A copy of ``booster`` whose numerical split thresholds are exact float32 values that make
    the same decisions on float32 inputs (see the module docstring). Categorical splits are
    refused (the ranker has none)."""
    import lightgbm

    text: str = booster.model_to_string()
    if re.search(r"^cat_boundaries=", text, re.MULTILINE):
        raise TrainingError("categorical splits are not supported by the ONNX export")
    snapped = _THRESHOLD_LINE.sub(lambda m: "threshold=" + " ".join(_snap(v) for v in m.group(1).split()), text)
    # The header's per-tree byte sizes no longer match; without them LightGBM parses tree by tree.
    snapped = _TREE_SIZES_LINE.sub("", snapped)
    return lightgbm.Booster(model_str=snapped)


def export_onnx(booster: Any, check_rows: F32) -> bytes:
    """Convert a LightGBM booster to ONNX and check ONNX Runtime reproduces ``booster.predict``.

    The bytes are a pure function of the booster (the graph gets a fixed name)."""
    import onnxmltools
    import onnxruntime as ort
    from onnxmltools.convert.common.data_types import FloatTensorType

    onnx_model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(RANKER_INPUT_NAME, FloatTensorType([None, N_RANKER_FEATURES]))],
        target_opset=15,
    )
    onnx_model.graph.name = "encore_ranker"  # onnxmltools names the graph with a random uuid
    data: bytes = onnx_model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    got = np.asarray(session.run(None, {RANKER_INPUT_NAME: check_rows})[0]).reshape(-1)
    want = np.asarray(booster.predict(check_rows), dtype=np.float64)
    if got.shape != want.shape or not np.allclose(got, want, rtol=ONNX_TOLERANCE, atol=ONNX_TOLERANCE):
        worst = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("nan")
        raise TrainingError(f"ONNX output differs from LightGBM predict (max abs diff {worst})")
    return data


def fit_booster(dataset: RankerDataset, n_trees: int, config: RankerConfig) -> Any:
    """Fit ``lambdarank`` deterministically: fixed seed and threads, ``deterministic=True`` and
    row-wise histograms, so the same data gives the same trees."""
    import lightgbm

    if dataset.n_queries == 0 or not np.any(dataset.labels > 0):
        raise TrainingError("no ranker training query has a positive candidate; data too small or sparse")
    params = {
        "objective": "lambdarank",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_child_samples,
        "bagging_fraction": config.subsample,
        "bagging_freq": 1,
        "feature_fraction": config.colsample_bytree,
        "seed": config.seed,
        "num_threads": config.threads,
        "deterministic": True,
        "force_row_wise": True,
        "label_gain": [float(2**g - 1) for g in range(max(2, int(dataset.labels.max()) + 1))],
        "verbosity": -1,
    }
    train_set = lightgbm.Dataset(
        dataset.features, label=dataset.labels, group=dataset.groups, params={"verbosity": -1}, free_raw_data=True
    )
    return lightgbm.train(params, train_set, num_boost_round=n_trees)


def train_ranker(
    dataset: RankerDataset, *, version: str, n_trees: int, config: RankerConfig | None = None
) -> TrainedRanker:
    """Fit, snap thresholds to float32, export to ONNX and check it against the booster."""
    booster = snap_thresholds(fit_booster(dataset, n_trees, config or RankerConfig()))
    check = np.ascontiguousarray(dataset.features[: min(5000, dataset.features.shape[0])], dtype=np.float32)
    return TrainedRanker(version=version, model=booster, onnx=export_onnx(booster, check), n_trees=n_trees)


__all__ = [
    "DEFAULT_MODEL",
    "LITE_MODEL",
    "MODEL_TREES",
    "ONNX_TOLERANCE",
    "RankerConfig",
    "RankerDataset",
    "TrainedRanker",
    "TrainingError",
    "export_onnx",
    "fit_booster",
    "snap_thresholds",
    "train_ranker",
]
