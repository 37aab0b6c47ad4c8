"""In-memory fakes behind the stage protocols, for unit tests (no FAISS, no ONNX, no Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from features.memory_store import MemoryFeatureStore
from features.schema import USER_STATS
from features.snapshot import UserSnapshot
from features.store import FeatureStoreError, UserRecord
from models.id_index import IdIndex
from ranking.budget import Budget, StageLimits
from ranking.components import Components
from ranking.hydrators.candidate_features import RankerFeatureHydrator
from ranking.hydrators.user_features import UserFeatureHydrator
from ranking.selectors.artist_diversity import ArtistDiversitySelector
from ranking.selectors.seed_slots import SeedSlots
from ranking.sources.ann import AnnSource
from ranking.sources.co_listen import CoListenSource
from ranking.sources.popularity import PopularitySource
from ranking.sources.seed_neighbors import SeedNeighborSource
from ranking.types import F32, Query, RankingParams, Surface

N_ITEMS, DIM = 300, 8
RNG = np.random.default_rng(7)
ITEM_VECTORS = RNG.normal(size=(N_ITEMS, DIM)).astype(np.float32)
ITEM_NORMS = np.linalg.norm(ITEM_VECTORS, axis=1).astype(np.float32)
ITEM_STATS = RNG.random(size=(N_ITEMS, 2)).astype(np.float32)
ARTISTS = (np.arange(N_ITEMS) // 5).astype(np.int64)  # 5 tracks per artist
POPULARITY = np.argsort(-ITEM_STATS[:, 0]).astype(np.int64)
ITEM_IDS = [f"i{i}" for i in range(N_ITEMS)]
KNOWN_PER_USER = 8
#: A hand-made neighbour table: item i's neighbours are i+1..i+K (mod N), weights 1/(rank+1).
NEIGHBOR_K = 6
NEIGHBORS = ((np.arange(N_ITEMS)[:, None] + np.arange(1, NEIGHBOR_K + 1)[None, :]) % N_ITEMS).astype(np.int32)
NEIGHBOR_WEIGHTS = np.tile(1.0 / np.arange(1, NEIGHBOR_K + 1), (N_ITEMS, 1)).astype(np.float32)
#: Item i's most negative EASE weight points at item i - 1.
NEGATIVES = ((np.arange(N_ITEMS) - 1) % N_ITEMS).astype(np.int32)[:, None]
NEGATIVE_WEIGHTS = np.full((N_ITEMS, 1), -0.25, dtype=np.float32)
INDEX_OF = IdIndex(np.asarray(ITEM_IDS))
EXECUTOR = ThreadPoolExecutor(max_workers=2)


class BruteForceIndex:
    """FAISS-like ``search`` by exact inner product."""

    def __init__(self, vectors: F32) -> None:
        self._vectors = vectors

    def search(self, queries: F32, k: int) -> tuple[F32, np.ndarray]:
        scores = queries @ self._vectors.T
        ids = np.argsort(-scores, axis=1)[:, :k]
        return np.take_along_axis(scores, ids, axis=1), ids


class BrokenIndex:
    def search(self, queries: F32, k: int) -> tuple[F32, np.ndarray]:
        raise RuntimeError("index corrupted")


class LinearScorer:
    """Scores ``features @ weights``; optionally fails or sleeps to exercise the executor."""

    name = "linear"

    def __init__(self, weights: F32 | None = None, *, fail: bool = False, delay_s: float = 0.0) -> None:
        self._weights = weights
        self._fail = fail
        self._delay_s = delay_s

    def enabled(self, query: Query) -> bool:
        return True

    def model_version(self, query: Query) -> str:
        return query.params.model_version or "linear-v1"

    async def score(self, query: Query, features: F32) -> F32:
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        if self._fail:
            raise RuntimeError("model exploded")
        weights = self._weights if self._weights is not None else np.eye(features.shape[1], dtype=np.float32)[0]
        return (features @ weights).astype(np.float32)


class FailingStore(MemoryFeatureStore):
    """A store whose reads fail (Redis down) or hang (Redis paused)."""

    def __init__(self, *, hang: bool = False) -> None:
        super().__init__()
        self._hang = hang

    async def get_user(self, user_id: str, timeout_s: float) -> UserRecord:
        if self._hang:
            await asyncio.sleep(10)
        raise FeatureStoreError("connection refused")

    async def record_events(self, user_id: str, plays: Sequence[str], skips: Sequence[str], timeout_s: float) -> None:
        raise FeatureStoreError("connection refused")


async def seeded_store(n_users: int = 10) -> MemoryFeatureStore:
    store = MemoryFeatureStore()
    await store.load_snapshot(
        UserSnapshot(
            user_ids=[f"u{u}" for u in range(n_users)],
            vectors=RNG.normal(size=(n_users, DIM)).astype(np.float32),
            stats=np.ones((n_users, len(USER_STATS)), dtype=np.float32),
            known_indptr=np.arange(0, KNOWN_PER_USER * n_users + 1, KNOWN_PER_USER, dtype=np.int64),
            known_items=np.concatenate([known_of(u) for u in range(n_users)]).astype(np.int32),
        )
    )
    return store


def known_of(user: int) -> np.ndarray:
    """The known items of fake user ``u<user>`` (ascending): a fixed, spread-out sample."""
    return np.sort((np.arange(KNOWN_PER_USER) * 37 + user * 11) % N_ITEMS).astype(np.int64)


def components(
    store: MemoryFeatureStore, *, scorer: LinearScorer | None = None, index: object | None = None
) -> Components:
    return Components(
        user_hydrator=UserFeatureHydrator(store, INDEX_OF, ITEM_VECTORS),
        ann=AnnSource(index or BruteForceIndex(ITEM_VECTORS), EXECUTOR),
        popularity=PopularitySource(POPULARITY),
        seed_neighbors=SeedNeighborSource(NEIGHBORS, NEIGHBOR_WEIGHTS),
        co_listen=CoListenSource(NEIGHBORS, NEIGHBOR_WEIGHTS),
        candidate_hydrator=RankerFeatureHydrator(
            ITEM_VECTORS, ITEM_NORMS, ITEM_STATS, NEIGHBORS, NEIGHBOR_WEIGHTS, NEGATIVES, NEGATIVE_WEIGHTS
        ),
        scorer=scorer or LinearScorer(),
        selector=ArtistDiversitySelector(ARTISTS, SeedSlots(NEIGHBORS)),
    )


def query(
    surface: Surface = Surface.HOME,
    *,
    user_id: str = "u1",
    seed: int | None = None,
    limit: int = 20,
    params: RankingParams | None = None,
) -> Query:
    return Query(
        request_id="test",
        user_id=user_id,
        surface=surface,
        limit=limit,
        params=params or RankingParams(retrieval_size=100, popularity_size=50, diversity_cap=2),
        seed_item=seed,
    )


def budget(total_s: float = 1.0, clock: Callable[[], float] | None = None) -> Budget:
    kwargs = {"clock": clock} if clock is not None else {}
    return Budget(
        surface_budget_s=total_s,
        client_timeout_s=None,
        limits=StageLimits(user_features=0.2, retrieval=0.2, scoring=0.2, reserve=0.001),
        **kwargs,
    )
