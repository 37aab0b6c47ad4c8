"""The artifact bundle: a versioned directory written offline and loaded by the server.

Layout (all paths relative to the bundle directory)::

    manifest.json               version, created, schema version, models, evaluation, checksums
    items.tsv                   item_id, artist_id, name (header row; row i is item index i)
    item_vectors.npy            float32 [n_items, dim] retrieval embeddings
    item_stats.npy              float32 [n_items, len(ITEM_STATS)]
    index.faiss                 FAISS inner-product index over item_vectors (ids = row index)
    popularity.npy              int64 item indices, most popular first
    item_neighbors.npy          int32 [n_items, K] co-listen neighbours per item, best first, -1 padded
    item_neighbor_weights.npy   float32 [n_items, K] their weights (>= 0, 0 where padded)
    item_negative_neighbors.npy int32 [n_items, K'] EASE's most negative weights per item, most
                                negative first, -1 padded (K' = 0 for a co-occurrence table)
    item_negative_weights.npy   float32 [n_items, K'] those weights (<= 0, 0 where padded)
    models/<version>.onnx       ranker(s): input RANKER_INPUT_NAME [N, N_RANKER_FEATURES] -> [N] or [N, 1]
    user_features/user_ids.txt  one user id per line (row i is user i)
    user_features/vectors.npy   float32 [n_users, dim] long-term user vectors
    user_features/stats.npy     float32 [n_users, len(USER_STATS)]
    user_features/known_indptr.npy  int64 [n_users + 1] CSR row pointers into known_items.npy
    user_features/known_items.npy   int32 item indices each user already knows (sorted per user)

``write_bundle`` writes a bundle atomically (to a temporary sibling directory, then renamed).
``stage_bundle`` + ``finalize_bundle`` split that in two so a build can load and evaluate the
staged bundle exactly as the server would, then publish it with the evaluation in its manifest
(the manifest is not among the checksummed files, so finalizing does not touch a checksum).
Item arrays, the neighbour tables and the known-items arrays are memory-mapped.
``load_bundle`` validates it (format, schema version, checksums, shapes) and raises
``BundleError`` naming the file and the problem; it never returns a half-valid bundle.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np
import numpy.typing as npt

from common.errors import EncoreError
from features.schema import (
    ITEM_STATS,
    N_RANKER_FEATURES,
    RANKER_FEATURES,
    RANKER_INPUT_NAME,
    SCHEMA_VERSION,
    USER_STATS,
)
from features.snapshot import UserSnapshot
from models.id_index import IdIndex

T = TypeVar("T")

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"


class BundleError(EncoreError):
    """A bundle is missing, corrupt, or does not match this server's feature schema."""


@dataclass(frozen=True)
class ModelSpec:
    """One ONNX ranker in the bundle."""

    version: str
    file: str
    input_name: str = RANKER_INPUT_NAME
    feature_names: tuple[str, ...] = RANKER_FEATURES


@dataclass(frozen=True)
class Catalog:
    """Items of a bundle: ids, artists and display names, aligned with the item index.

    Ids and names are numpy string arrays and ``index_of`` an ``IdIndex``: no per-item Python
    objects, so worker processes share these pages with their parent.
    """

    item_ids: npt.NDArray[np.str_]
    artist_ids: npt.NDArray[np.int64]
    names: npt.NDArray[np.str_]
    index_of: IdIndex = field(repr=False)

    @classmethod
    def build(cls, item_ids: list[str], artist_ids: list[str], names: list[str]) -> Catalog:
        """Build a catalog; artist ids are interned to dense integers for fast diversity caps."""
        interned: dict[str, int] = {}
        artists = np.fromiter(
            (interned.setdefault(a, len(interned)) for a in artist_ids), dtype=np.int64, count=len(artist_ids)
        )
        ids = np.asarray(item_ids, dtype=np.str_)
        try:
            index_of = IdIndex(ids)
        except ValueError as exc:
            raise BundleError(f"items.tsv: item ids are not unique ({exc})") from None
        return cls(item_ids=ids, artist_ids=artists, names=np.asarray(names, dtype=np.str_), index_of=index_of)

    def __len__(self) -> int:
        return len(self.item_ids)

    def item_id(self, row: int) -> str:
        return str(self.item_ids[row])


I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


def known_from_csr(matrix: Any) -> tuple[I64, I32]:
    """``(known_indptr, known_items)`` from a users × items sparse matrix: the items with a
    non-zero entry per user, sorted ascending (for ``UserSnapshot``)."""
    csr = matrix.tocsr(copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    return np.asarray(csr.indptr, dtype=np.int64), np.asarray(csr.indices, dtype=np.int32)


def check_known(indptr: npt.NDArray[Any], items: npt.NDArray[Any], n_users: int, n_items: int) -> list[str]:
    """Problems with a known-items CSR pair (empty list when valid)."""
    if indptr.dtype != np.int64 or indptr.shape != (n_users + 1,):
        return [f"known_indptr is {indptr.dtype}{indptr.shape}, expected int64({n_users + 1},)"]
    if items.dtype != np.int32 or items.ndim != 1:
        return [f"known_items is {items.dtype}{items.shape}, expected a 1-d int32 array"]
    if indptr[0] != 0 or indptr[-1] != items.size or (n_users and bool(np.any(np.diff(indptr) < 0))):
        return [f"known_indptr is not a row-pointer array over {items.size} known items"]
    if items.size and (int(items.min()) < 0 or int(items.max()) >= n_items):
        return [f"known_items holds item indices outside 0..{n_items - 1}"]
    steps = np.diff(items.astype(np.int64))
    row_starts = indptr[1:-1]
    inside = np.ones(steps.size, dtype=np.bool_)
    inside[row_starts[(row_starts > 0) & (row_starts < items.size)] - 1] = False
    if bool(np.any(steps[inside] <= 0)):
        return ["known_items are not strictly ascending within each user"]
    return []


def check_neighbors(
    neighbors: npt.NDArray[Any], weights: npt.NDArray[Any], n_items: int, *, negative: bool = False
) -> list[str]:
    """Problems with an item-neighbour table (empty list when valid); ``negative``: the negative
    table, whose weights are <= 0."""
    name, weight_name = (
        ("item_negative_neighbors", "item_negative_weights")
        if negative
        else ("item_neighbors", "item_neighbor_weights")
    )
    if neighbors.dtype != np.int32 or neighbors.ndim != 2 or neighbors.shape[0] != n_items:
        return [f"{name} is {neighbors.dtype}{neighbors.shape}, expected int32({n_items}, K)"]
    if weights.dtype != np.float32 or weights.shape != neighbors.shape:
        return [f"{weight_name} is {weights.dtype}{weights.shape}, expected float32{neighbors.shape}"]
    if neighbors.size == 0:
        return []
    problems = []
    if int(neighbors.min()) < -1 or int(neighbors.max()) >= n_items:
        problems.append(f"{name} holds indices outside -1..{n_items - 1}")
    low, high = float(weights.min()), float(weights.max())
    if not (np.isfinite(low) and np.isfinite(high)) or (high > 0 if negative else low < 0):
        problems.append(f"{weight_name} must be finite and {'<= 0' if negative else '>= 0'}")
    return problems


@dataclass(frozen=True)
class BundleContents:
    """Everything ``write_bundle`` needs. Arrays are row-aligned with ``item_ids``."""

    version: str
    item_ids: list[str]
    artist_ids: list[str]
    item_names: list[str]
    item_vectors: npt.NDArray[np.float32]
    item_stats: npt.NDArray[np.float32]
    popularity: npt.NDArray[np.int64]
    models: dict[str, bytes]  # model version -> serialized ONNX
    default_model: str
    users: UserSnapshot
    #: A cheaper model of ``models`` for the scoring cascade (``None``: no cascade).
    light_model: str | None = None
    #: int32 / float32 [n_items, K]; ``None``: no neighbour table (K = 0, co-listen sources empty).
    item_neighbors: I32 | None = None
    item_neighbor_weights: npt.NDArray[np.float32] | None = None
    #: int32 / float32 [n_items, K']; ``None``: no negative table (K' = 0).
    item_negative_neighbors: I32 | None = None
    item_negative_weights: npt.NDArray[np.float32] | None = None
    dataset: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    index_type: str = "auto"  # ``INDEX_TYPES``


@dataclass(frozen=True)
class Bundle:
    """A loaded, validated bundle. Item arrays are memory-mapped and read-only."""

    path: Path
    manifest: dict[str, Any]
    catalog: Catalog
    item_vectors: npt.NDArray[np.float32]
    item_norms: npt.NDArray[np.float32]
    item_stats: npt.NDArray[np.float32]
    popularity: npt.NDArray[np.int64]
    index: Any  # faiss.Index
    models: dict[str, ModelSpec]
    default_model: str
    light_model: str | None  # the cascade's light model, one of ``models`` (None: no cascade)
    item_neighbors: I32  # [n_items, K], memory-mapped
    item_neighbor_weights: npt.NDArray[np.float32]  # [n_items, K], memory-mapped
    item_negative_neighbors: I32  # [n_items, K'], memory-mapped
    item_negative_weights: npt.NDArray[np.float32]  # [n_items, K'], memory-mapped

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    def model_path(self, version: str) -> Path:
        return self.path / self.models[version].file

    def load_users(self) -> UserSnapshot:
        """Read the user-feature snapshot (not kept by the bundle; the known items memory-mapped)."""
        base = self.path / "user_features"
        user_ids = _read(base / "user_ids.txt", lambda f: f.read_text(encoding="utf-8").splitlines())
        vectors = _read(base / "vectors.npy", np.load)
        stats = _read(base / "stats.npy", np.load)
        if vectors.shape != (len(user_ids), self.dim) or stats.shape != (len(user_ids), len(USER_STATS)):
            raise BundleError(f"{base}: user snapshot shapes {vectors.shape}/{stats.shape} do not match ids")
        indptr = _read(base / "known_indptr.npy", _mapped)
        items = _read(base / "known_items.npy", _mapped)
        problems = check_known(indptr, items, len(user_ids), len(self.catalog))
        if problems:
            raise BundleError(f"{base}: " + "; ".join(problems))
        return UserSnapshot(user_ids=user_ids, vectors=vectors, stats=stats, known_indptr=indptr, known_items=items)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: ``--index-type`` values: ``auto`` = flat up to ``FLAT_MAX_ITEMS`` items, IVF-flat beyond.
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw", "ivfpq")
FLAT_MAX_ITEMS = 200_000
HNSW_M = 32


def index_bytes_per_item(index_type: str, dim: int) -> float:
    """Approximate index memory per item (``--index-type``; centroids excluded): flat and IVF
    store the float32 vector (4·d; IVF adds an 8-byte id), HNSW adds ``2·M`` int32 links on
    layer 0 (4·d + 8·M), IVF-PQ stores ``m = d / 4`` one-byte codes and an 8-byte id."""
    if index_type in ("flat", "auto"):
        return 4.0 * dim
    if index_type == "ivf":
        return 4.0 * dim + 8
    if index_type == "hnsw":
        return 4.0 * dim + 8.0 * HNSW_M
    if index_type == "ivfpq":
        return dim / 4 + 8
    raise ValueError(f"--index-type {index_type!r}: use one of {', '.join(INDEX_TYPES)}")


def _build_index(vectors: npt.NDArray[np.float32], index_type: str = "auto") -> Any:
    """The inner-product index over ``vectors`` (ids = row index). ``auto``: exact search for
    small catalogs, IVF-flat for large ones; ``flat`` / ``ivf`` / ``hnsw`` (M = 32) / ``ivfpq``
    (``d / 4`` sub-quantizers of 8 bits) force one. Raises ``ValueError`` naming ``--index-type``."""
    n, dim = vectors.shape
    if index_type not in INDEX_TYPES:
        raise ValueError(f"--index-type {index_type!r}: use one of {', '.join(INDEX_TYPES)}")
    if index_type == "auto":
        index_type = "flat" if n <= FLAT_MAX_ITEMS else "ivf"
    index: Any
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 40 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        if index_type == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            if dim % 4:
                raise ValueError(f"--index-type ivfpq needs a dimension divisible by 4, not {dim}")
            if n < 256 * 39:
                raise ValueError(f"--index-type ivfpq needs at least {256 * 39} items to train its codebooks, not {n}")
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, dim // 4, 8, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(n, size=min(n, max(nlist * 40, 256 * 39)), replace=False)]
        index.train(np.ascontiguousarray(sample))
        index.nprobe = 16
    index.add(np.ascontiguousarray(vectors))
    return index


@dataclass(frozen=True)
class StagedBundle:
    """A complete bundle in a hidden temporary directory, not yet published at ``out_dir``."""

    path: Path
    out_dir: Path


def write_bundle(contents: BundleContents, out_dir: Path) -> Path:
    """Write ``contents`` as a bundle at ``out_dir`` atomically and return its path.

    Raises ``BundleError`` when arrays are misaligned or ``out_dir`` already exists.
    """
    return finalize_bundle(stage_bundle(contents, out_dir))


def finalize_bundle(staged: StagedBundle, evaluation: dict[str, Any] | None = None) -> Path:
    """Publish a staged bundle at its ``out_dir`` (one rename), with ``evaluation`` (when given)
    written into the manifest first. On failure the staging directory is removed."""
    try:
        if staged.out_dir.exists():
            raise BundleError(f"{staged.out_dir}: already exists; bundles are immutable, pick a new version")
        if evaluation is not None:
            manifest = read_manifest(staged.path)
            manifest["evaluation"] = evaluation
            _write_manifest(staged.path, manifest)
        os.replace(staged.path, staged.out_dir)
    except BaseException:
        discard_bundle(staged)
        raise
    return staged.out_dir


def discard_bundle(staged: StagedBundle) -> None:
    """Remove a staged bundle that will not be published."""
    shutil.rmtree(staged.path, ignore_errors=True)


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path / MANIFEST)


def _table(items: I32 | None, weights: npt.NDArray[np.float32] | None, n: int) -> tuple[I32, npt.NDArray[np.float32]]:
    """A neighbour table as contiguous int32 / float32 arrays; no table is one with zero columns."""
    if items is None or weights is None:
        return np.full((n, 0), -1, dtype=np.int32), np.zeros((n, 0), dtype=np.float32)
    return np.ascontiguousarray(items, dtype=np.int32), np.ascontiguousarray(weights, dtype=np.float32)


def stage_bundle(contents: BundleContents, out_dir: Path) -> StagedBundle:
    """Write ``contents`` as a complete bundle into a hidden sibling of ``out_dir``.

    ``load_bundle(staged.path)`` reads it like any bundle; ``finalize_bundle`` publishes it and
    ``discard_bundle`` drops it. Raises ``BundleError`` when arrays are misaligned or ``out_dir``
    already exists.
    """
    n = len(contents.item_ids)
    dim = contents.item_vectors.shape[1]
    checks = {
        "artist_ids": len(contents.artist_ids) == n,
        "item_names": len(contents.item_names) == n,
        "item_vectors": contents.item_vectors.shape[0] == n,
        "item_stats": contents.item_stats.shape == (n, len(ITEM_STATS)),
        "users.vectors": contents.users.vectors.shape == (len(contents.users.user_ids), dim),
        "users.stats": contents.users.stats.shape == (len(contents.users.user_ids), len(USER_STATS)),
        "default_model": contents.default_model in contents.models,
        "light_model": contents.light_model is None or contents.light_model in contents.models,
        "item_neighbors": (contents.item_neighbors is None) == (contents.item_neighbor_weights is None),
        "item_negative_neighbors": (contents.item_negative_neighbors is None)
        == (contents.item_negative_weights is None),
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise BundleError(f"bundle contents are inconsistent: {', '.join(bad)}")
    neighbors, weights = _table(contents.item_neighbors, contents.item_neighbor_weights, n)
    negatives, negative_weights = _table(contents.item_negative_neighbors, contents.item_negative_weights, n)
    known_indptr, known_items = contents.users.known_arrays()
    known_indptr = np.asarray(known_indptr, dtype=np.int64)
    known_items = np.asarray(known_items, dtype=np.int32)
    problems = check_neighbors(neighbors, weights, n)
    problems += check_neighbors(negatives, negative_weights, n, negative=True)
    problems += check_known(known_indptr, known_items, len(contents.users.user_ids), n)
    if problems:
        raise BundleError("bundle contents are inconsistent: " + "; ".join(problems))
    if out_dir.exists():
        raise BundleError(f"{out_dir}: already exists; bundles are immutable, pick a new version")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with (tmp / "items.tsv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow(["item_id", "artist_id", "name"])
            writer.writerows(zip(contents.item_ids, contents.artist_ids, contents.item_names, strict=True))
        vectors = np.ascontiguousarray(contents.item_vectors, dtype=np.float32)
        np.save(tmp / "item_vectors.npy", vectors)
        np.save(tmp / "item_stats.npy", np.ascontiguousarray(contents.item_stats, dtype=np.float32))
        np.save(tmp / "popularity.npy", np.asarray(contents.popularity, dtype=np.int64))
        np.save(tmp / "item_neighbors.npy", neighbors)
        np.save(tmp / "item_neighbor_weights.npy", weights)
        np.save(tmp / "item_negative_neighbors.npy", negatives)
        np.save(tmp / "item_negative_weights.npy", negative_weights)
        faiss.write_index(_build_index(vectors, contents.index_type), str(tmp / "index.faiss"))
        (tmp / "models").mkdir()
        models = []
        for version, onnx_bytes in sorted(contents.models.items()):
            rel = f"models/{version}.onnx"
            (tmp / rel).write_bytes(onnx_bytes)
            models.append(
                {
                    "version": version,
                    "file": rel,
                    "input_name": RANKER_INPUT_NAME,
                    "feature_names": list(RANKER_FEATURES),
                }
            )
        users = tmp / "user_features"
        users.mkdir()
        (users / "user_ids.txt").write_text("".join(f"{u}\n" for u in contents.users.user_ids), encoding="utf-8")
        np.save(users / "vectors.npy", contents.users.vectors.astype(np.float32))
        np.save(users / "stats.npy", contents.users.stats.astype(np.float32))
        np.save(users / "known_indptr.npy", known_indptr)
        np.save(users / "known_items.npy", known_items)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": contents.version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "schema_version": SCHEMA_VERSION,
            "n_items": n,
            "embedding_dim": int(dim),
            "item_stats": list(ITEM_STATS),
            "item_neighbors_k": int(neighbors.shape[1]),
            "item_negative_neighbors_k": int(negatives.shape[1]),
            "known_items": int(known_items.size),
            "user_stats": list(USER_STATS),
            "models": models,
            "default_model": contents.default_model,
            "light_model": contents.light_model,
            "dataset": contents.dataset,
            "evaluation": contents.evaluation,
            "checksums": {str(p.relative_to(tmp)): _sha256(p) for p in files},
        }
        _write_manifest(tmp, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedBundle(path=tmp, out_dir=out_dir)


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and parse ``manifest.json``; ``BundleError`` if missing or not JSON."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: no {MANIFEST}; is this a bundle directory?") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / MANIFEST}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{path / MANIFEST}: expected a JSON object")
    return manifest


def _verify(path: Path, manifest: dict[str, Any], verify_checksums: bool) -> None:
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {manifest.get('format')!r}, this server reads {BUNDLE_FORMAT}")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: feature schema version {manifest.get('schema_version')!r}, "
            f"this server uses {SCHEMA_VERSION}; rebuild the bundle"
        )
    kinds: dict[str, type] = {
        "version": str,
        "models": list,
        "default_model": str,
        "checksums": dict,
        "n_items": int,
        "embedding_dim": int,
    }
    for key, kind in kinds.items():
        if key not in manifest:
            raise BundleError(f"{path / MANIFEST}: missing key {key!r}")
        if not isinstance(manifest[key], kind):
            raise BundleError(f"{path / MANIFEST}: {key} must be a {kind.__name__}, got {manifest[key]!r:.80}")
    for rel, expected in manifest["checksums"].items():
        file = path / rel
        if not file.is_file():
            raise BundleError(f"{file}: listed in the manifest but missing")
        if verify_checksums and _sha256(file) != expected:
            raise BundleError(f"{file}: checksum mismatch (corrupt or modified)")


def _read_catalog(path: Path) -> Catalog:
    item_ids: list[str] = []
    artist_ids: list[str] = []
    names: list[str] = []
    with (path / "items.tsv").open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header != ["item_id", "artist_id", "name"]:
            raise BundleError(f"{path / 'items.tsv'}: unexpected header {header!r}")
        for line, row in enumerate(reader, start=2):
            if len(row) != 3:
                raise BundleError(f"{path / 'items.tsv'}:{line}: expected 3 tab-separated columns, got {len(row)}")
            item_ids.append(row[0])
            artist_ids.append(row[1])
            names.append(row[2])
    return Catalog.build(item_ids, artist_ids, names)


def _read(file: Path, reader: Callable[[Path], T]) -> T:
    """``reader(file)``, any read or format error raised as a ``BundleError`` naming the file."""
    try:
        return reader(file)
    except (OSError, ValueError, RuntimeError, EOFError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file}: cannot read: {exc}") from exc


def _mapped(file: Path) -> npt.NDArray[Any]:
    """A ``.npy`` array memory-mapped read-only (shared by every process) but viewed as a plain
    array: the memmap subclass costs per-access overhead on the hot path."""
    array: npt.NDArray[Any] = np.load(file, mmap_mode="r").view(np.ndarray)
    return array


def load_bundle(path: Path, *, verify_checksums: bool = True) -> Bundle:
    """Load and validate the bundle at ``path``; raise ``BundleError`` on any problem."""
    path = Path(path)
    manifest = read_manifest(path)
    _verify(path, manifest, verify_checksums)
    catalog = _read(path / "items.tsv", lambda _: _read_catalog(path))
    vectors = _read(path / "item_vectors.npy", _mapped)
    stats = _read(path / "item_stats.npy", _mapped)
    popularity = _read(path / "popularity.npy", np.load)
    neighbors = _read(path / "item_neighbors.npy", _mapped)
    neighbor_weights = _read(path / "item_neighbor_weights.npy", _mapped)
    negatives = _read(path / "item_negative_neighbors.npy", _mapped)
    negative_weights = _read(path / "item_negative_weights.npy", _mapped)
    index = _read(path / "index.faiss", lambda f: faiss.read_index(str(f)))
    n, dim = manifest["n_items"], manifest["embedding_dim"]
    problems = []
    if len(catalog) != n:
        problems.append(f"items.tsv has {len(catalog)} rows, manifest says {n}")
    if vectors.shape != (n, dim) or vectors.dtype != np.float32:
        problems.append(f"item_vectors.npy is {vectors.dtype}{vectors.shape}, expected float32({n}, {dim})")
    if stats.shape != (n, len(ITEM_STATS)):
        problems.append(f"item_stats.npy is {stats.shape}, expected ({n}, {len(ITEM_STATS)})")
    if index.ntotal != n or index.d != dim:
        problems.append(f"index.faiss holds {index.ntotal}x{index.d}, expected {n}x{dim}")
    if popularity.size == 0 or popularity.min() < 0 or popularity.max() >= n:
        problems.append("popularity.npy is empty or holds item indices out of range")
    problems += check_neighbors(neighbors, neighbor_weights, n)
    problems += check_neighbors(negatives, negative_weights, n, negative=True)
    models: dict[str, ModelSpec] = {}
    for entry in manifest["models"]:
        try:
            spec = ModelSpec(
                version=str(entry["version"]),
                file=str(entry["file"]),
                input_name=str(entry["input_name"]),
                feature_names=tuple(entry["feature_names"]),
            )
        except (KeyError, TypeError) as exc:
            raise BundleError(f"{path / MANIFEST}: models entry {entry!r:.80} lacks {exc} or is malformed") from None
        if spec.feature_names != RANKER_FEATURES:
            problems.append(f"model {spec.version}: feature names differ from the schema")
        models[spec.version] = spec
    if manifest["default_model"] not in models:
        problems.append(f"default_model {manifest['default_model']!r} is not one of {sorted(models)}")
    light = manifest.get("light_model")
    if light is not None and light not in models:
        problems.append(f"light_model {light!r} is not one of {sorted(models)}")
    if problems:
        raise BundleError(f"{path}: " + "; ".join(problems))
    norms = np.linalg.norm(vectors, axis=1).astype(np.float32)
    return Bundle(
        path=path,
        manifest=manifest,
        catalog=catalog,
        item_vectors=vectors,
        item_norms=norms,
        item_stats=stats,
        popularity=popularity,
        index=index,
        models=models,
        default_model=str(manifest["default_model"]),
        light_model=None if light is None else str(light),
        item_neighbors=neighbors,
        item_neighbor_weights=neighbor_weights,
        item_negative_neighbors=negatives,
        item_negative_weights=negative_weights,
    )


__all__ = [
    "N_RANKER_FEATURES",
    "Bundle",
    "BundleContents",
    "BundleError",
    "Catalog",
    "ModelSpec",
    "StagedBundle",
    "check_known",
    "check_neighbors",
    "discard_bundle",
    "finalize_bundle",
    "known_from_csr",
    "load_bundle",
    "stage_bundle",
    "write_bundle",
]
