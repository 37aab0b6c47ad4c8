"""Approximate nearest-neighbour retrieval from the bundle's FAISS index."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ranking.types import Candidates, Query, UserFeatures


class AnnSource:
    """Home: the user query vector; Now Playing: the seed item's vector blended with the user's.

    Returns up to ``params.retrieval_size`` items by inner product, best first; nothing for a
    cold-start user on Home (the popularity source covers them). With an ``executor`` the FAISS
    search runs there, off the event loop; without one it runs inline — the composition root
    decides by the index's cost (a sub-millisecond search is cheaper than a thread hop).
    """

    name = "ann"
    timed = True

    def __init__(self, index: Any, executor: Executor | None) -> None:
        self._index = index
        self._executor = executor

    def enabled(self, query: Query) -> bool:
        return True

    async def fetch(self, query: Query, user: UserFeatures, source_id: int) -> Candidates:
        vector = user.query_vector
        if not vector.any():
            return Candidates.empty()
        k = query.params.retrieval_size
        if self._executor is None:
            scores, ids = self._index.search(vector[None, :], k)
        else:
            loop = asyncio.get_running_loop()
            scores, ids = await loop.run_in_executor(self._executor, self._index.search, vector[None, :], k)
        valid = ids[0] >= 0
        items = ids[0][valid].astype(np.int64)
        return Candidates(items, scores[0][valid].astype(np.float32), np.full(len(items), source_id, np.int8))
