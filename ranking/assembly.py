"""Builds the served pipelines from a loaded bundle: the one code path for serving and evaluation.

``assemble`` turns a bundle, its warmed ONNX sessions, a feature store and a thread pool into the
components and one ``PipelineExecutor`` per surface. The server's composition root
(``serving.app``) calls it, adding its side effects; the offline evaluation
(``models.evaluation``) calls it with an embedded store seeded from the bundle's snapshot and no
side effects, and runs the executors in process. Nothing here reads settings: the caller passes
the per-query ``RankingParams`` (defaults in ``DEFAULT_PARAMS``) with each ``Query``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import faiss
from opentelemetry import trace

from features.store import FeatureStore
from models.bundle import Bundle
from ranking.components import Components
from ranking.hydrators.candidate_features import RankerFeatureHydrator
from ranking.hydrators.user_features import UserFeatureHydrator
from ranking.observer import PipelineObserver
from ranking.pipeline import PipelineExecutor
from ranking.scorers.onnx_ranker import OnnxRankerScorer
from ranking.selectors.artist_diversity import ArtistDiversitySelector
from ranking.selectors.seed_slots import SeedSlots
from ranking.sources.ann import AnnSource
from ranking.sources.co_listen import CoListenSource
from ranking.sources.popularity import PopularitySource
from ranking.sources.seed_neighbors import SeedNeighborSource
from ranking.stages import SideEffect
from ranking.surfaces import home, now_playing
from ranking.tracing import NO_TRACER
from ranking.types import RankingParams, Surface

#: Rows the full model scores after the bundle's light model scored every candidate (README,
#: "Offline quality": NDCG@10 and recall@100 equal to full scoring on the real data at 150).
CASCADE_SIZE = 150

#: Per-surface defaults of the ranking knobs (``serving.config`` starts from these).
DEFAULT_PARAMS: Mapping[Surface, RankingParams] = {
    Surface.HOME: RankingParams(retrieval_size=300, diversity_cap=2, cascade_size=CASCADE_SIZE),
    Surface.NOW_PLAYING: RankingParams(retrieval_size=200, diversity_cap=2, open_slots=2, cascade_size=CASCADE_SIZE),
}

#: Builds the side effects from the scorer and selector (the server's shadow scoring needs both).
SideEffectFactory = Callable[[OnnxRankerScorer, ArtistDiversitySelector], Sequence[SideEffect]]


@dataclass(frozen=True)
class Assembly:
    """What ``assemble`` built for one bundle."""

    scorer: OnnxRankerScorer
    selector: ArtistDiversitySelector
    components: Components
    pipelines: dict[Surface, PipelineExecutor]


def search_is_cheap(bundle: Bundle) -> bool:
    """IVF or small flat indexes answer in well under a millisecond: search inline, no thread hop."""
    return isinstance(bundle.index, faiss.IndexIVF) or bundle.index.ntotal * bundle.dim <= 4_000_000


def assemble(
    bundle: Bundle,
    sessions: Mapping[str, Any],
    store: FeatureStore,
    executor: Executor,
    observer: PipelineObserver,
    side_effects: SideEffectFactory | None = None,
    *,
    score_inline: bool = False,
    tracer: trace.Tracer = NO_TRACER,
) -> Assembly:
    """Components and one executor per surface (declared in ``ranking.surfaces``) for ``bundle``.

    ``sessions`` maps model version → warmed ONNX session (``models.runtime.load_sessions``);
    ``executor`` runs ONNX (unless ``score_inline``: on the caller's thread, no hop) and FAISS when
    the index is expensive off the event loop. ``tracer``: the executors' (``ranking.tracing``; by
    default nothing is recorded).
    """
    scorer = OnnxRankerScorer(
        sessions,
        {v: s.input_name for v, s in bundle.models.items()},
        bundle.default_model,
        None if score_inline else executor,
        light_version=bundle.light_model,
    )
    selector = ArtistDiversitySelector(bundle.catalog.artist_ids, SeedSlots(bundle.item_neighbors))
    neighbors, weights = bundle.item_neighbors, bundle.item_neighbor_weights
    components = Components(
        user_hydrator=UserFeatureHydrator(store, bundle.catalog.index_of, bundle.item_vectors),
        ann=AnnSource(bundle.index, None if search_is_cheap(bundle) else executor),
        popularity=PopularitySource(bundle.popularity),
        seed_neighbors=SeedNeighborSource(neighbors, weights),
        co_listen=CoListenSource(neighbors, weights),
        candidate_hydrator=RankerFeatureHydrator(
            bundle.item_vectors,
            bundle.item_norms,
            bundle.item_stats,
            neighbors,
            weights,
            bundle.item_negative_neighbors,
            bundle.item_negative_weights,
        ),
        scorer=scorer,
        selector=selector,
        side_effects=tuple(side_effects(scorer, selector)) if side_effects is not None else (),
    )
    pipelines = {
        Surface.HOME: PipelineExecutor(home.declare(components), observer, tracer=tracer),
        Surface.NOW_PLAYING: PipelineExecutor(now_playing.declare(components), observer, tracer=tracer),
    }
    return Assembly(scorer=scorer, selector=selector, components=components, pipelines=pipelines)


__all__ = ["DEFAULT_PARAMS", "Assembly", "SideEffectFactory", "assemble", "search_is_cheap"]
