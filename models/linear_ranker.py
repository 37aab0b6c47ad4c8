"""A linear ranker as a real ONNX model: ``score = features @ weights`` over ``RANKER_FEATURES``.

Used for transparent baselines (e.g. "rank by affinity", "rank by popularity") in experiment
simulations and in fast tests; the learned rankers come from ``models.training``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from features.schema import N_RANKER_FEATURES, RANKER_FEATURES, RANKER_INPUT_NAME


def linear_ranker(weights: Mapping[str, float] | np.ndarray) -> bytes:
    """Serialized ONNX model scoring ``features @ w`` with output shape [N, 1].

    ``weights`` is either a full vector in ``RANKER_FEATURES`` order or a mapping from feature
    name to weight (unnamed features weigh 0). ``KeyError`` names an unknown feature.
    """
    if isinstance(weights, Mapping):
        vector = np.zeros(N_RANKER_FEATURES, dtype=np.float32)
        for name, weight in weights.items():
            if name not in RANKER_FEATURES:
                raise KeyError(f"unknown ranker feature {name!r}; known: {', '.join(RANKER_FEATURES)}")
            vector[RANKER_FEATURES.index(name)] = weight
    else:
        vector = np.asarray(weights, dtype=np.float32).reshape(N_RANKER_FEATURES)
    w = helper.make_tensor("w", TensorProto.FLOAT, [N_RANKER_FEATURES, 1], vector.tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", [RANKER_INPUT_NAME, "w"], ["score"])],
        "linear_ranker",
        [helper.make_tensor_value_info(RANKER_INPUT_NAME, TensorProto.FLOAT, [None, N_RANKER_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
