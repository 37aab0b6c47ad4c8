"""HetRec loader and synthetic generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.datasets import DatasetError
from features.hetrec import load_hetrec
from features.synthetic import generate_synthetic


def _write_hetrec(root: Path, user_artists: str, artists: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "user_artists.dat").write_text(user_artists, encoding="utf-8")
    if artists is None:
        artists = (
            "id\tname\turl\tpictureURL\n"
            "1\tMALICE MIZER\thttp://x/1\thttp://p/1\n"
            "7\tDiary of Dreams\thttp://x/7\thttp://p/7\n"
        )
    (root / "artists.dat").write_text(artists, encoding="utf-8")
    return root


def test_hetrec_loader_builds_play_matrix_with_artists_as_items(tmp_path: Path) -> None:
    root = _write_hetrec(
        tmp_path / "lastfm",
        "userID\tartistID\tweight\r\n2\t1\t100\r\n2\t7\t5\r\n9\t7\t30\r\n9\t42\t3\r\n",
    )
    data = load_hetrec(root)
    assert data.user_ids == ["2", "9"]
    assert data.item_ids == ["1", "7", "42"]
    assert data.artist_ids == data.item_ids
    assert data.item_names == ["MALICE MIZER", "Diary of Dreams", ""]  # 42 only in user_artists
    assert data.plays.dtype == np.float32
    assert data.plays.toarray().tolist() == [[100.0, 5.0, 0.0], [0.0, 30.0, 3.0]]
    assert data.name == "hetrec2011-lastfm-2k"


def test_hetrec_loader_replaces_undecodable_bytes_in_artist_names(tmp_path: Path) -> None:
    root = _write_hetrec(tmp_path, "userID\tartistID\tweight\n1\t1\t3\n")
    (root / "artists.dat").write_bytes(b"id\tname\turl\tpictureURL\n1\tBj\xf6rk\tu\tp\n")
    assert load_hetrec(root).item_names == ["Bj\ufffdrk"]


def test_malformed_play_row_raises_dataset_error_naming_file_and_line(tmp_path: Path) -> None:
    root = _write_hetrec(tmp_path, "userID\tartistID\tweight\n2\t1\t100\n2\tseven\t5\n")
    with pytest.raises(DatasetError) as excinfo:
        load_hetrec(root)
    assert excinfo.value.line == 3
    assert "user_artists.dat:3" in str(excinfo.value)
    assert "artistID" in str(excinfo.value)


def test_play_row_with_missing_column_raises_dataset_error(tmp_path: Path) -> None:
    root = _write_hetrec(tmp_path, "userID\tartistID\tweight\n2\t1\n")
    with pytest.raises(DatasetError, match=r"user_artists\.dat:2: expected 3"):
        load_hetrec(root)


def test_non_positive_play_count_is_rejected(tmp_path: Path) -> None:
    root = _write_hetrec(tmp_path, "userID\tartistID\tweight\n2\t1\t0\n")
    with pytest.raises(DatasetError, match=r"user_artists\.dat:2"):
        load_hetrec(root)


def test_missing_artists_file_raises_dataset_error_naming_it(tmp_path: Path) -> None:
    root = _write_hetrec(tmp_path, "userID\tartistID\tweight\n2\t1\t3\n")
    (root / "artists.dat").unlink()
    with pytest.raises(DatasetError, match=r"artists\.dat: file not found"):
        load_hetrec(root)


def test_malformed_artist_row_raises_dataset_error_with_line(tmp_path: Path) -> None:
    root = _write_hetrec(
        tmp_path, "userID\tartistID\tweight\n2\t1\t3\n", "id\tname\turl\tpictureURL\n1\tA\tu\tp\nx\tB\tu\tp\n"
    )
    with pytest.raises(DatasetError, match=r"artists\.dat:3"):
        load_hetrec(root)


def test_synthetic_generator_has_requested_shape_and_id_formats() -> None:
    data = generate_synthetic(2_000, 500, tracks_per_artist=10, seed=1)
    assert data.plays.shape == (500, 2_000)
    assert len(data.item_ids) == len(data.artist_ids) == len(data.item_names) == 2_000
    assert data.item_ids[123] == "t0000123"
    assert data.artist_ids[123] == "a00012"
    assert data.item_names[123] == "Artist 12 – Track 4"
    assert data.name == "synthetic-2000"
    assert data.plays.dtype == np.float32
    assert data.plays.data.min() >= 1.0
    assert np.diff(data.plays.indptr).min() >= 1  # every user played something


def test_synthetic_generator_is_deterministic_by_seed() -> None:
    a = generate_synthetic(3_000, 300, seed=7)
    b = generate_synthetic(3_000, 300, seed=7)
    c = generate_synthetic(3_000, 300, seed=8)
    assert (a.plays != b.plays).nnz == 0
    assert a.plays.shape == c.plays.shape
    assert (a.plays != c.plays).nnz > 0


def test_synthetic_popularity_is_heavily_skewed() -> None:
    data = generate_synthetic(10_000, 3_000, seed=0)
    listeners = np.sort(np.diff(data.plays.tocsc().indptr))[::-1]
    top_share = listeners[: len(listeners) // 100].sum() / listeners.sum()
    assert top_share > 0.1  # the top 1% of items have > 10x their uniform share of listeners
    assert np.percentile(data.plays.data, 99) > 5 * np.median(data.plays.data)  # heavy-tailed plays


def test_synthetic_artists_group_tracks_and_users_revisit_artists() -> None:
    data = generate_synthetic(5_000, 1_000, tracks_per_artist=10, seed=3)
    artists = np.asarray([int(a[1:]) for a in data.artist_ids])
    assert (np.bincount(artists) == 10).all()
    coo = data.plays.tocoo()
    pairs = coo.row.astype(np.int64) * (artists.max() + 1) + artists[coo.col]
    # Many plays share (user, artist) with another play of the same user: artists matter.
    assert np.unique(pairs).size < 0.9 * pairs.size
