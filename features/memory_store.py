"""Embedded in-memory feature store: the default for a one-command local run and unit tests."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from features.schema import RECENT_PLAYS_MAX
from features.snapshot import UserSnapshot
from features.store import UserRecord


class MemoryFeatureStore:
    """Same contract as ``RedisFeatureStore``; lives in one process and never times out."""

    def __init__(self) -> None:
        self._vectors: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]] = {}
        self._plays: dict[str, deque[str]] = {}
        self._skips: dict[str, deque[str]] = {}

    async def get_user(self, user_id: str, timeout_s: float) -> UserRecord:
        found = self._vectors.get(user_id)
        plays, skips = tuple(self._plays.get(user_id, ())), tuple(self._skips.get(user_id, ()))
        if found is None:
            return UserRecord(vector=None, stats=None, recent_plays=plays, recent_skips=skips)
        vector, stats, known = found
        return UserRecord(vector=vector, stats=stats, recent_plays=plays, recent_skips=skips, known_items=known)

    async def record_events(self, user_id: str, plays: Sequence[str], skips: Sequence[str], timeout_s: float) -> None:
        for target, items in ((self._plays, plays), (self._skips, skips)):
            if items:
                recent = target.setdefault(user_id, deque(maxlen=RECENT_PLAYS_MAX))
                recent.extendleft(items)

    async def load_snapshot(self, snapshot: UserSnapshot, progress: Callable[[int, int], None] | None = None) -> int:
        total = len(snapshot.user_ids)
        for i, user_id in enumerate(snapshot.user_ids):
            self._vectors[user_id] = (
                np.array(snapshot.vectors[i], dtype=np.float32),
                np.array(snapshot.stats[i], dtype=np.float32),
                np.array(snapshot.known(i), dtype=np.int32),
            )
        if progress is not None:
            progress(total, total)
        return total

    async def ping(self, timeout_s: float) -> bool:
        return True

    async def close(self) -> None:
        return None
