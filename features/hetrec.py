"""Loader for the HetRec 2011 Last.fm 2K dataset (items are artists).

Reads, from a directory given by path:

- ``user_artists.dat``: ``userID<TAB>artistID<TAB>weight`` with a header row (weight = play count);
- ``artists.dat``: ``id<TAB>name<TAB>url<TAB>pictureURL`` with a header row (UTF-8, undecodable
  bytes replaced).

Tag files (``user_taggedartists.dat``, ``tags.dat``) are optional and not used. Items are ordered
by numeric artist id; artists that appear only in ``user_artists.dat`` get the name ``""``. Users
are ordered by numeric user id. Repeated (user, artist) rows are summed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.datasets import DatasetError, Interactions, interactions_from_triples

USER_ARTISTS = "user_artists.dat"
ARTISTS = "artists.dat"
DATASET_NAME = "hetrec2011-lastfm-2k"


def _open_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(path, f"cannot read: {exc}") from exc
    return text.splitlines()


def _parse_int(path: Path, line_no: int, column: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetError(path, f"column {column!r} is not an integer: {value!r}", line_no) from None


def _read_user_artists(path: Path) -> tuple[list[int], list[int], list[float]]:
    lines = _open_lines(path)
    if not lines or lines[0].strip().split("\t")[:3] != ["userID", "artistID", "weight"]:
        raise DatasetError(path, "expected header 'userID<TAB>artistID<TAB>weight'", 1)
    users: list[int] = []
    artists: list[int] = []
    weights: list[float] = []
    for line_no, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DatasetError(path, f"expected 3 tab-separated fields, got {len(fields)}", line_no)
        users.append(_parse_int(path, line_no, "userID", fields[0]))
        artists.append(_parse_int(path, line_no, "artistID", fields[1]))
        try:
            weight = float(fields[2])
        except ValueError:
            raise DatasetError(path, f"column 'weight' is not a number: {fields[2]!r}", line_no) from None
        if not np.isfinite(weight) or weight <= 0:
            raise DatasetError(path, f"column 'weight' must be a positive play count: {fields[2]!r}", line_no)
        weights.append(weight)
    if not users:
        raise DatasetError(path, "no interactions")
    return users, artists, weights


def _read_artists(path: Path) -> dict[int, str]:
    lines = _open_lines(path)
    if not lines or lines[0].rstrip("\r\n").split("\t")[:2] != ["id", "name"]:
        raise DatasetError(path, "expected header 'id<TAB>name<TAB>url<TAB>pictureURL'", 1)
    names: dict[int, str] = {}
    for line_no, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DatasetError(path, f"expected at least id and name, got {len(fields)} field(s)", line_no)
        artist = _parse_int(path, line_no, "id", fields[0].strip())
        if artist in names:
            raise DatasetError(path, f"duplicate artist id {artist}", line_no)
        names[artist] = fields[1]
    return names


def load_hetrec(path: Path) -> Interactions:
    """Load HetRec 2011 Last.fm from the directory ``path``; ``DatasetError`` on bad input."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(path, "dataset directory not found")
    users, artists, weights = _read_user_artists(path / USER_ARTISTS)
    names = _read_artists(path / ARTISTS)
    user_values = sorted(set(users))
    artist_values = sorted(set(artists) | set(names))
    user_index = {u: i for i, u in enumerate(user_values)}
    artist_index = {a: i for i, a in enumerate(artist_values)}
    plays = interactions_from_triples(
        np.fromiter((user_index[u] for u in users), dtype=np.int64, count=len(users)),
        np.fromiter((artist_index[a] for a in artists), dtype=np.int64, count=len(artists)),
        np.asarray(weights, dtype=np.float32),
        len(user_values),
        len(artist_values),
    )
    item_ids = [str(a) for a in artist_values]
    return Interactions(
        user_ids=[str(u) for u in user_values],
        item_ids=item_ids,
        artist_ids=list(item_ids),
        item_names=[names.get(a, "") for a in artist_values],
        plays=plays,
        name=DATASET_NAME,
    )


__all__ = ["DATASET_NAME", "load_hetrec"]
