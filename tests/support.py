"""Test support: tiny bundles with a real ONNX model, seeded user snapshots, where the repo and the
real data are. The processes the tests start (Redis, Redis Cluster, ``encore serve``, free ports)
come from ``loadtests.harness``."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from features.schema import ITEM_STATS, USER_STATS
from features.snapshot import UserSnapshot
from models.bundle import BundleContents, write_bundle
from models.linear_ranker import linear_ranker

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "hetrec2011-lastfm-2k"


def user_snapshot(n: int, dim: int, seed: int = 1, n_items: int = 1000) -> UserSnapshot:
    """``n`` users ("user-0", …) with seeded random vectors and stats, and ``i % 7`` known items
    for user ``i`` (so user 0 knows nothing), ascending indices below ``n_items``."""
    rng = np.random.default_rng(seed)
    known = [np.sort(rng.choice(n_items, size=i % 7, replace=False)) for i in range(n)]
    return UserSnapshot(
        user_ids=[f"user-{i}" for i in range(n)],
        vectors=rng.normal(size=(n, dim)).astype(np.float32),
        stats=rng.random(size=(n, len(USER_STATS))).astype(np.float32),
        known_indptr=np.concatenate([[0], np.cumsum([k.size for k in known])]).astype(np.int64),
        known_items=np.concatenate(known).astype(np.int32) if n else np.empty(0, np.int32),
    )


def cosine_neighbors(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A hand-made neighbour table: each item's ``k`` most cosine-similar items with positive
    similarity (weights = the cosine), -1/0 padded — the shape ``item_neighbors.npy`` has."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(sims, order, axis=1)
    positive = top > 0
    neighbors = np.where(positive, order, -1).astype(np.int32)
    weights = np.where(positive, top, 0.0).astype(np.float32)
    return neighbors, weights


def tiny_bundle(parent: Path, *, n_items: int = 400, n_users: int = 50, dim: int = 8, seed: int = 0) -> Path:
    """A small random bundle: 4 tracks per artist, two linear rankers ("linear-v1", "linear-v2"), a
    cosine neighbour table (K = 10) and 5 random known items per user."""
    contents = tiny_contents(n_items=n_items, n_users=n_users, dim=dim, seed=seed)
    return write_bundle(contents, parent / contents.version)


def tiny_contents(*, n_items: int = 400, n_users: int = 50, dim: int = 8, seed: int = 0) -> BundleContents:
    """What ``tiny_bundle`` writes (``dataclasses.replace`` it to vary models or users)."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    popularity_counts = rng.zipf(1.5, size=n_items).astype(np.float32)
    neighbors, weights = cosine_neighbors(vectors, k=10)
    contents = BundleContents(
        version=f"tiny-{seed}",
        item_ids=[f"i{i:05d}" for i in range(n_items)],
        artist_ids=[f"a{i // 4:04d}" for i in range(n_items)],
        item_names=[f"Artist {i // 4} – Track {i % 4}" for i in range(n_items)],
        item_vectors=vectors,
        item_stats=np.stack([np.log1p(popularity_counts)] * len(ITEM_STATS), axis=1).astype(np.float32),
        popularity=np.argsort(-popularity_counts, kind="stable").astype(np.int64),
        models={
            "linear-v1": linear_ranker({"retrieval_score": 1.0}),
            "linear-v2": linear_ranker({"item_popularity_log": 1.0}),
        },
        default_model="linear-v1",
        users=UserSnapshot(
            user_ids=[f"u{u}" for u in range(n_users)],
            vectors=rng.normal(size=(n_users, dim)).astype(np.float32),
            stats=np.ones((n_users, len(USER_STATS)), dtype=np.float32),
            known_indptr=np.arange(0, 5 * n_users + 1, 5, dtype=np.int64),
            known_items=np.sort(np.stack([rng.choice(n_items, size=5, replace=False) for _ in range(n_users)]), axis=1)
            .reshape(-1)
            .astype(np.int32),
        ),
        item_neighbors=neighbors,
        item_neighbor_weights=weights,
        dataset={"name": "tiny-random"},
    )
    return contents


def promtool() -> str:
    """The path of promtool (Debian's prometheus package); fails the test with how to get it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's prometheus package "
            "(`apt-get install -y prometheus`, or `make system-packages`, which `make test` runs)"
        )
    return path


def load_build_client() -> ModuleType:
    """``clients/python/build_client.py`` (stages and builds the encore-client package) as a module."""
    spec = importlib.util.spec_from_file_location("build_client", REPO / "clients" / "python" / "build_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
