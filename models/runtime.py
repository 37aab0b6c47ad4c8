"""Loading, validating and warming the bundle's ONNX rankers with ONNX Runtime."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from features.schema import N_RANKER_FEATURES
from models.bundle import Bundle, BundleError

#: Rows in the warm-up batch (a typical candidate count).
WARMUP_ROWS = 500


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """Explicit threading: ONNX Runtime must not spawn a thread per core per session."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def load_sessions(bundle: Bundle, intra_op_threads: int = 1) -> dict[str, Any]:
    """One warmed ``InferenceSession`` per model version; ``BundleError`` if a model is unusable.

    Checks each model's single input against the schema (name, float32, [N, N_RANKER_FEATURES])
    and that a warm-up batch yields one finite score per row.
    """
    sessions: dict[str, Any] = {}
    warmup = np.zeros((WARMUP_ROWS, N_RANKER_FEATURES), dtype=np.float32)
    for version, spec in bundle.models.items():
        path = bundle.model_path(version)
        try:
            session = ort.InferenceSession(
                str(path), session_options(intra_op_threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: ONNX Runtime cannot load model {version}: {exc}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != spec.input_name:
            raise BundleError(f"{path}: expected one input named {spec.input_name!r}, got {[i.name for i in inputs]}")
        shape = inputs[0].shape
        if inputs[0].type != "tensor(float)" or len(shape) != 2 or shape[1] != N_RANKER_FEATURES:
            raise BundleError(
                f"{path}: input {inputs[0].name} is {inputs[0].type}{shape}, expected float[N, {N_RANKER_FEATURES}]"
            )
        scores = np.asarray(session.run(None, {spec.input_name: warmup})[0]).reshape(-1)
        if scores.shape != (WARMUP_ROWS,) or not np.isfinite(scores).all():
            raise BundleError(f"{path}: warm-up returned {scores.shape} scores for {WARMUP_ROWS} rows or non-finite")
        sessions[version] = session
    return sessions
