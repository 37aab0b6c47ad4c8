"""The offline user-feature snapshot: what a bundle stores and what seeds a feature store.

It lives in ``features`` (not ``models``) so the store protocol and its implementations depend on
nothing from ``models``; ``models.bundle`` reads and writes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class UserSnapshot:
    """Offline user features to seed a feature store; row i of each array is ``user_ids[i]``."""

    user_ids: list[str]
    vectors: npt.NDArray[np.float32]  # [n_users, dim] long-term user vectors
    stats: npt.NDArray[np.float32]  # [n_users, len(features.schema.USER_STATS)]
