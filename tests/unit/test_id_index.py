"""IdIndex behaves like a read-only dict from id to row."""

from __future__ import annotations

import numpy as np
import pytest

from models.id_index import IdIndex


def test_lookups_match_a_dict_for_known_unknown_and_unicode_ids() -> None:
    ids = ["t3", "a1", "zz", "é-ü", "用户", "b2"]
    index = IdIndex(np.asarray(ids))
    reference = {item: i for i, item in enumerate(ids)}
    for item, row in reference.items():
        assert index[item] == row and item in index and index.lookup(item) == row
    for missing in ("", "t", "t30", "zzz", "a0"):
        assert missing not in index and index.lookup(missing) is None
        with pytest.raises(KeyError):
            index[missing]
    assert len(index) == len(ids) and sorted(index) == sorted(ids)
    assert dict(index.items()) == reference


def test_rows_skips_unknown_keys_and_keeps_order() -> None:
    index = IdIndex(np.asarray(["a", "b", "c", "d"]))
    assert index.rows(["d", "x", "a", "a", "zz", "dd"]).tolist() == [3, 0, 0]
    assert index.rows([]).tolist() == []
    assert IdIndex(np.asarray([], dtype=np.str_)).rows(["a"]).tolist() == []


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate id 'b'"):
        IdIndex(np.asarray(["a", "b", "c", "b"]))
