"""The learned ranker: one ONNX Runtime batch call per request."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ranking.types import F32, Query


class OnnxRankerScorer:
    """Scores all candidates in one ``InferenceSession.run`` on ``executor`` (off the event loop).

    ``sessions`` maps model version → a warmed session; the query's ``params.model_version``
    picks one (``None`` → ``default_version``). Returns one float32 score per row, in input order.
    """

    name = "onnx_ranker"

    def __init__(
        self, sessions: Mapping[str, Any], input_names: Mapping[str, str], default_version: str, executor: Executor
    ) -> None:
        self._sessions = dict(sessions)
        self._input_names = dict(input_names)
        self._default = default_version
        self._executor = executor

    def enabled(self, query: Query) -> bool:
        return True

    @property
    def versions(self) -> frozenset[str]:
        return frozenset(self._sessions)

    def model_version(self, query: Query) -> str:
        return query.params.model_version or self._default

    async def score(self, query: Query, features: F32) -> F32:
        return await self.score_with(self.model_version(query), features)

    async def score_with(self, version: str, features: F32) -> F32:
        """Scores from model ``version`` (``KeyError`` if the bundle has no such model)."""
        session = self._sessions[version]
        feeds = {self._input_names[version]: features}
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(self._executor, session.run, None, feeds)
        return np.asarray(outputs[0], dtype=np.float32).reshape(-1)
