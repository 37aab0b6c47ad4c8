"""Approximate nearest-neighbour retrieval from the bundle's FAISS index."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ranking.query import retrieval_query
from ranking.types import F32, Candidates, Query, UserFeatures


class AnnSource:
    """Home: the user query vector; Now Playing: the seed item's vector blended with the user's.

    Returns up to ``params.retrieval_size`` items by inner product, best first; nothing for a
    cold-start user on Home (the popularity source covers them). The FAISS search runs on
    ``executor`` so it never blocks the event loop.
    """

    name = "ann"
    timed = True

    def __init__(self, index: Any, item_vectors: F32, executor: Executor) -> None:
        self._index = index
        self._item_vectors = item_vectors
        self._executor = executor

    def enabled(self, query: Query) -> bool:
        return True

    async def fetch(self, query: Query, user: UserFeatures, source_id: int) -> Candidates:
        vector = retrieval_query(query, user, self._item_vectors)
        if not vector.any():
            return Candidates.empty()
        k = query.params.retrieval_size
        loop = asyncio.get_running_loop()
        scores, ids = await loop.run_in_executor(self._executor, self._index.search, vector[None, :], k)
        valid = ids[0] >= 0
        items = ids[0][valid].astype(np.int64)
        return Candidates(items, scores[0][valid].astype(np.float32), np.full(len(items), source_id, np.int8))
