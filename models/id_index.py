"""A read-only id → row mapping backed by numpy arrays.

A dict of a million Python strings costs hundreds of MB per process and, in forked workers,
reference counting slowly un-shares its pages. ``IdIndex`` keeps the ids in one fixed-width
string array (plus its sort order) and answers lookups by binary search — a few microseconds —
so every worker shares the same pages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt


class IdIndex(Mapping[str, int]):
    """``ids[i]`` ↦ ``i``. Raises ``ValueError`` at construction when ids repeat."""

    def __init__(self, ids: npt.NDArray[np.str_]) -> None:
        self._order = np.argsort(ids, kind="stable").astype(np.int64)
        self._sorted = ids[self._order]
        if len(ids) > 1 and bool((self._sorted[1:] == self._sorted[:-1]).any()):
            duplicate = self._sorted[1:][self._sorted[1:] == self._sorted[:-1]][0]
            raise ValueError(f"duplicate id {str(duplicate)!r}")

    def lookup(self, key: str) -> int | None:
        """The row of ``key``, or None."""
        pos = int(np.searchsorted(self._sorted, key))
        if pos < len(self._sorted) and self._sorted[pos] == key:
            return int(self._order[pos])
        return None

    def rows(self, keys: Sequence[str]) -> npt.NDArray[np.int64]:
        """Rows of the known ``keys``, in order; unknown keys are skipped. One vectorised search."""
        if not keys or not len(self._sorted):
            return np.empty(0, dtype=np.int64)
        wanted = np.asarray(keys, dtype=np.str_)  # its own width: a longer key must not be truncated
        pos = np.minimum(np.searchsorted(self._sorted, wanted), len(self._sorted) - 1)
        found = self._sorted[pos] == wanted
        return np.asarray(self._order[pos[found]], dtype=np.int64)

    def __getitem__(self, key: str) -> int:
        row = self.lookup(key) if isinstance(key, str) else None
        if row is None:
            raise KeyError(key)
        return row

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.lookup(key) is not None

    def __len__(self) -> int:
        return len(self._sorted)

    def __iter__(self) -> Iterator[str]:
        return (str(self._sorted[p]) for p in np.argsort(self._order))
