"""Test support: tiny bundles with a real ONNX model, seeded user snapshots, where the repo and the
real data are. The processes the tests start (Redis, Redis Cluster, ``encore serve``, free ports)
come from ``loadtests.harness``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.schema import ITEM_STATS, USER_STATS
from features.snapshot import UserSnapshot
from models.bundle import BundleContents, write_bundle
from models.linear_ranker import linear_ranker

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "hetrec2011-lastfm-2k"


def user_snapshot(n: int, dim: int, seed: int = 1) -> UserSnapshot:
    """``n`` users ("user-0", …) with seeded random vectors and stats."""
    rng = np.random.default_rng(seed)
    return UserSnapshot(
        user_ids=[f"user-{i}" for i in range(n)],
        vectors=rng.normal(size=(n, dim)).astype(np.float32),
        stats=rng.random(size=(n, len(USER_STATS))).astype(np.float32),
    )


def tiny_bundle(parent: Path, *, n_items: int = 400, n_users: int = 50, dim: int = 8, seed: int = 0) -> Path:
    """A small random bundle: 4 tracks per artist, two linear rankers ("linear-v1", "linear-v2")."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    popularity_counts = rng.zipf(1.5, size=n_items).astype(np.float32)
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
        ),
        dataset={"name": "tiny-random"},
    )
    return write_bundle(contents, parent / contents.version)
