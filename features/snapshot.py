"""The offline user-feature snapshot: what a bundle stores and what seeds a feature store.

It lives in ``features`` (not ``models``) so the store protocol and its implementations depend on
nothing from ``models``; ``models.bundle`` reads and writes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
_NO_ITEMS: I32 = np.empty(0, dtype=np.int32)


@dataclass(frozen=True)
class UserSnapshot:
    """Offline user features to seed a feature store.

    ``known_indptr``/``known_items`` (CSR over users) list the item indices each user already
    knows (the interactions the served model was fit on), sorted per user; ``None`` for both
    means nobody knows anything. ``known(row)`` is user ``row``'s slice.
    """

    user_ids: list[str]
    vectors: npt.NDArray[np.float32]
    stats: npt.NDArray[np.float32]
    known_indptr: I64 | None = None
    known_items: I32 | None = None

    def known(self, row: int) -> I32:
        """Item indices user ``row`` knows, ascending (a view; empty when none)."""
        if self.known_indptr is None or self.known_items is None:
            return _NO_ITEMS
        return self.known_items[int(self.known_indptr[row]) : int(self.known_indptr[row + 1])]

    def known_arrays(self) -> tuple[I64, I32]:
        """``(indptr, items)``, all-empty rows when the snapshot has no known items."""
        if self.known_indptr is None or self.known_items is None:
            return np.zeros(len(self.user_ids) + 1, dtype=np.int64), _NO_ITEMS
        return self.known_indptr, self.known_items
