"""Interaction datasets: the in-memory form every loader and generator returns.

Exceptions::

    DatasetError          a dataset file is missing or malformed (names the file and the line)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from common.errors import EncoreError


class DatasetError(EncoreError):
    """A dataset file is missing or malformed.

    ``path`` and ``line`` (1-based, ``None`` for whole-file problems) say where.
    """

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}" if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Interactions:
    """User × item play counts plus item metadata.

    Row ``u`` of ``plays`` is ``user_ids[u]``; column ``i`` is ``item_ids[i]``, whose artist is
    ``artist_ids[i]`` and display name ``item_names[i]``. ``plays`` is a float32 CSR matrix of
    play counts (> 0 where the user played the item, implicit zero elsewhere).
    """

    user_ids: list[str]
    item_ids: list[str]
    artist_ids: list[str]
    item_names: list[str]
    plays: sp.csr_matrix
    name: str

    def __post_init__(self) -> None:
        n_users, n_items = self.plays.shape
        if len(self.user_ids) != n_users:
            raise ValueError(f"{len(self.user_ids)} user ids for {n_users} rows of plays")
        for label, values in (
            ("item_ids", self.item_ids),
            ("artist_ids", self.artist_ids),
            ("item_names", self.item_names),
        ):
            if len(values) != n_items:
                raise ValueError(f"{len(values)} {label} for {n_items} columns of plays")

    @property
    def n_users(self) -> int:
        return int(self.plays.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.plays.shape[1])

    @property
    def n_interactions(self) -> int:
        return int(self.plays.nnz)

    def summary(self) -> dict[str, object]:
        """Dataset facts for the bundle manifest."""
        return {
            "name": self.name,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_artists": len(set(self.artist_ids)),
            "n_interactions": self.n_interactions,
        }


def interactions_from_triples(
    users: np.ndarray, items: np.ndarray, plays: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """Build a float32 CSR [n_users, n_items] from (user index, item index, plays); duplicates sum."""
    matrix = sp.csr_matrix(
        (plays.astype(np.float32), (users.astype(np.int64), items.astype(np.int64))),
        shape=(n_users, n_items),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


__all__ = ["DatasetError", "Interactions", "interactions_from_triples"]
