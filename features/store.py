"""The FeatureStore protocol, shared by the Redis store (production) and the in-memory one.

Error tree::

    FeatureStoreError              the store could not answer (callers fail open)
    └── FeatureStoreTimeout        it did not answer within the per-call timeout
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from common.errors import EncoreError
from features.snapshot import UserSnapshot


class FeatureStoreError(EncoreError):
    """The feature store failed (connection refused, protocol error, corrupt value)."""


class FeatureStoreTimeout(FeatureStoreError):
    """The feature store did not answer within the call's timeout."""


_NO_ITEMS: npt.NDArray[np.int32] = np.empty(0, dtype=np.int32)


@dataclass(frozen=True)
class UserRecord:
    """What the store holds for one user; ``vector``/``stats`` are ``None`` for unknown users.

    ``known_items`` are the bundle's item indices the user already knows (from the snapshot),
    ascending; empty for unknown users. Like ``vector`` they belong to the bundle that wrote them.
    """

    vector: npt.NDArray[np.float32] | None
    stats: npt.NDArray[np.float32] | None
    recent_plays: tuple[str, ...]  # item ids, most recent first
    recent_skips: tuple[str, ...]  # item ids, most recent first
    known_items: npt.NDArray[np.int32] = field(default_factory=lambda: _NO_ITEMS)


class FeatureStore(Protocol):
    """Async user-feature store. Every call takes an explicit timeout in seconds."""

    async def get_user(self, user_id: str, timeout_s: float) -> UserRecord:
        """One round trip. Raises ``FeatureStoreError``/``FeatureStoreTimeout``."""
        ...

    async def record_events(self, user_id: str, plays: Sequence[str], skips: Sequence[str], timeout_s: float) -> None:
        """Prepend plays/skips (oldest first in the arguments) to the user's recent lists, trimmed."""
        ...

    async def load_snapshot(self, snapshot: UserSnapshot, progress: Callable[[int, int], None] | None = None) -> int:
        """Write a bundle's user-feature snapshot; returns the number of users written."""
        ...

    async def ping(self, timeout_s: float) -> bool: ...

    async def close(self) -> None: ...
