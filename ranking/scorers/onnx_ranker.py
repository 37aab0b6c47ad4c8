"""The learned ranker: ONNX Runtime batch calls, optionally as a two-model cascade."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ranking.types import F32, Query


class OnnxRankerScorer:
    """Scores candidates on ``executor`` (off the event loop) or, with ``executor=None``, inline on the
    caller's thread (no thread hop: cheaper when scoring takes about a millisecond and the server scales
    by worker processes); one float32 score per row, in input order.

    ``sessions`` maps model version → a warmed session; the query's ``params.model_version``
    picks one (``None`` → ``default_version``). Without a cascade that model scores every row in
    one ``run``. With a cascade — ``light_version`` set (the bundle's light model), different from
    the request's model, and ``params.cascade_size`` > 0 and below the number of rows — the light
    model scores every row and the request's model only the light model's best ``cascade_size``
    rows, in one executor hop: those rows come first, in the full model's order, then the others
    in the light model's order. Scores order one answer; their scale means nothing across answers.
    """

    name = "onnx_ranker"

    def __init__(
        self,
        sessions: Mapping[str, Any],
        input_names: Mapping[str, str],
        default_version: str,
        executor: Executor | None,
        light_version: str | None = None,
    ) -> None:
        if light_version is not None and light_version not in sessions:
            raise ValueError(f"light model {light_version!r} is not one of {sorted(sessions)}")
        self._sessions = dict(sessions)
        self._input_names = dict(input_names)
        self._default = default_version
        self._light = light_version
        self._executor = executor

    def enabled(self, query: Query) -> bool:
        return True

    @property
    def versions(self) -> frozenset[str]:
        return frozenset(self._sessions)

    def model_version(self, query: Query) -> str:
        return query.params.model_version or self._default

    def cascades(self, query: Query, n_rows: int) -> bool:
        """Whether ``score`` runs the cascade for ``query`` over ``n_rows`` candidates."""
        size = query.params.cascade_size
        return self._light is not None and self._light != self.model_version(query) and 0 < size < n_rows

    async def score(self, query: Query, features: F32) -> F32:
        version = self.model_version(query)
        if not self.cascades(query, features.shape[0]):
            return await self.score_with(version, features)
        assert self._light is not None
        size = query.params.cascade_size
        if self._executor is None:
            return self._cascade(self._light, version, features, size)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._cascade, self._light, version, features, size)

    async def score_with(self, version: str, features: F32) -> F32:
        """Scores from model ``version`` on every row (``KeyError`` if the bundle has no such model)."""
        if self._executor is None:
            return self._run(version, features)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, version, features)

    def _run(self, version: str, features: F32) -> F32:
        outputs = self._sessions[version].run(None, {self._input_names[version]: features})
        return np.asarray(outputs[0], dtype=np.float32).reshape(-1)

    def _cascade(self, light: str, full: str, features: F32, size: int) -> F32:
        coarse = self._run(light, features)
        top = np.sort(np.argpartition(-coarse, size - 1)[:size])  # the light model's best rows, in row order
        fine = self._run(full, np.ascontiguousarray(features[top]))
        scores = coarse.copy()
        rest = np.ones(coarse.size, dtype=np.bool_)
        rest[top] = False
        # lift the full model's rows above every other row, keeping their order
        floor = float(coarse[rest].max()) + 1.0
        scores[top] = fine - float(fine.min()) + floor
        return scores
