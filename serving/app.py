"""The composition root: builds every resource once, inside one async lifespan, and tears it down.

Start-up order: load + validate the bundle → load experiments → open the feature store
(embedded by default; Redis with ``redis_url``) and seed it → build the serving state (ONNX
sessions, components, one executor per surface) and warm it → start the reloaders. Nothing is
built lazily on the request path. A bundle reload builds and warms a new ``ServingState`` in the
background and swaps the reference; the store, metrics, logs and thread pool are shared.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import faiss
from opentelemetry.sdk.trace.export import SpanExporter

from encore.v1.capture_pb2 import CapturedRank
from features.memory_store import MemoryFeatureStore
from features.redis_store import RedisFeatureStore, redacted_url
from features.store import FeatureStore
from models.bundle import Bundle, load_bundle
from models.runtime import load_sessions
from ranking.assembly import assemble
from ranking.budget import Budget, StageLimits
from ranking.pipeline import PipelineExecutor
from ranking.scorers.onnx_ranker import OnnxRankerScorer
from ranking.selectors.artist_diversity import ArtistDiversitySelector
from ranking.side_effects.exposure_log import ExposureLogSideEffect
from ranking.side_effects.shadow_scoring import ShadowScoringSideEffect
from ranking.stages import SideEffect
from ranking.types import Query, RankingParams, Surface
from serving.admission import AdmissionController
from serving.bundle_reload import BundleReloader
from serving.capture import capture_files, encode_delimited
from serving.config import Settings
from serving.errors import ConfigError
from serving.experiments.assignment import Assigner, Assignment
from serving.experiments.config import ExperimentError, ExperimentsConfig, load_experiments, parse_experiments
from serving.experiments.exposure_log import ExposureLog, exposure_files
from serving.experiments.follow import StoreFollower
from serving.experiments.outcome_log import OutcomeLog, outcome_files
from serving.experiments.reload import ExperimentsReloader
from serving.experiments.store import open_store
from serving.logsink import BackgroundWriter
from serving.metrics import Metrics
from serving.tracing import DISABLED, Tracing, build_tracing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingState:
    """One bundle's serving objects. Swapped whole on a bundle reload; a request reads
    ``app.state`` once and uses that snapshot to the end, so a swap never splits a request."""

    bundle: Bundle
    scorer: OnnxRankerScorer
    pipelines: dict[Surface, PipelineExecutor]


@dataclass
class EncoreApp:
    """Everything a request needs, built once; ``state`` and ``assigner`` are swapped on reload."""

    settings: Settings
    state: ServingState
    store: FeatureStore
    metrics: Metrics
    assigner: Assigner  # replaced whole (one reference swap) when the experiments file reloads
    builder: StateBuilder
    admission: AdmissionController  # this process's admission (serving.interceptors.AdmissionInterceptor)
    reloader: ExperimentsReloader | None = None
    store_follower: StoreFollower | None = None  # with experiments_store: follows its revisions
    bundle_reloader: BundleReloader | None = None
    capture: BackgroundWriter[CapturedRank] | None = None
    outcomes: OutcomeLog | None = None  # RecordEvents offers every event the store accepted
    tracing: Tracing = DISABLED  # serving.tracing: the server span interceptor, the pipelines' tracer
    experiments: ExperimentsConfig | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def bundle(self) -> Bundle:
        return self.state.bundle

    def apply_experiments(self, config: ExperimentsConfig) -> None:
        """Swap in a validated experiments configuration; requests after this see it."""
        self.experiments = config
        self.assigner = Assigner(config)
        self.metrics.experiments_active.set(len(config.all_experiments))
        for c in self.assigner.conflicts:
            log.warning(
                "experiments on %s: %s and %s both set %s; %s wins (first in the file)",
                c.surface,
                c.winner,
                c.shadowed,
                c.param,
                c.winner,
            )

    async def reload_bundle(self, path: Path) -> ServingState:
        """Load, validate and warm the bundle at ``path`` off the event loop, then swap it in.

        Raises ``BundleError``/``ConfigError`` and keeps the current bundle serving when the new one
        is broken or does not have a model the settings or the running experiments name.
        """
        bundle = await asyncio.to_thread(load_bundle, path)
        _check_shadow_models(self.settings, bundle)
        _log_cascade(self.settings, bundle)
        used = _models_used(self.experiments) - set(bundle.models)
        if used:
            raise ConfigError(f"{path}: experiments use model(s) {sorted(used)} that bundle {bundle.version} lacks")
        state = await self.builder.build(bundle)
        if isinstance(self.store, RedisFeatureStore):  # its load once complete, else the previous one
            await self.store.follow(bundle.version)
        old = self.state
        self.state = state
        self.metrics.bundle_info.labels(old.bundle.version, old.bundle.default_model).set(0)
        self.metrics.bundle_info.labels(bundle.version, bundle.default_model).set(1)
        for pipeline in old.pipelines.values():
            await pipeline.drain_side_effects()
        return state

    def params_for(self, user_id: str, surface: Surface) -> tuple[RankingParams, tuple[Assignment, ...]]:
        """Surface defaults with the user's experiment overrides applied, and the assignments."""
        result = self.assigner.assign(user_id, surface)
        params = self.settings.surfaces[surface].params.with_overrides(result.overrides)
        return params, result.assignments

    @property
    def store_timeout_s(self) -> float:
        return self.settings.redis_timeout_ms / 1000.0


@dataclass
class StateBuilder:
    """Builds (and warms) a ``ServingState`` for a bundle from the long-lived shared resources."""

    settings: Settings
    store: FeatureStore
    metrics: Metrics
    executor: ThreadPoolExecutor
    exposures: ExposureLog | None
    tracing: Tracing = DISABLED

    async def build(self, bundle: Bundle) -> ServingState:
        sessions = await asyncio.to_thread(load_sessions, bundle, 1)

        def side_effects(scorer: OnnxRankerScorer, selector: ArtistDiversitySelector) -> list[SideEffect]:
            effects: list[SideEffect] = [ShadowScoringSideEffect(scorer, selector, self.metrics)]
            if self.exposures is not None:
                effects.append(ExposureLogSideEffect(self.exposures, bundle.version))
            return effects

        built = assemble(
            bundle,
            sessions,
            self.store,
            self.executor,
            self.metrics,
            side_effects,
            score_inline=self.settings.score_inline,
            tracer=self.tracing.tracer,
        )
        await _warm_up(built.pipelines, self.settings, bundle)
        return ServingState(bundle=bundle, scorer=built.scorer, pipelines=built.pipelines)


def _models_used(config: ExperimentsConfig | None) -> set[str]:
    if config is None:
        return set()
    return {
        m
        for e in config.all_experiments
        for v in e.variants
        for m in (v.params.model_version, v.params.shadow_model)
        if m
    }


def _progress(done: int, total: int) -> None:
    log.info("user features: %d/%d written", done, total)


async def load_features(store: FeatureStore, bundle: Bundle) -> None:
    """Write the bundle's user-feature snapshot into ``store`` with progress lines (Redis: as load
    ``bundle.version``, then marked complete; ``features.redis_store``)."""
    started = time.perf_counter()
    written = await store.load_snapshot(bundle.load_users(), progress=_progress)
    log.info("feature store: wrote %d users in %.1f s", written, time.perf_counter() - started)


async def _open_store(settings: Settings, bundle: Bundle) -> FeatureStore:
    if settings.redis_url is None:
        store: FeatureStore = MemoryFeatureStore()
        written = await store.load_snapshot(bundle.load_users())
        log.info("embedded feature store: %d users from the bundle snapshot", written)
        return store
    # versioned: reads the user hashes of this bundle's load once complete (features.redis_store)
    store = RedisFeatureStore.from_url(settings.redis_url, bundle.dim, version=bundle.version)
    if settings.load_features:
        await load_features(store, bundle)
    await store.follow(bundle.version)
    if not await store.ping(1.0):
        log.warning(
            "redis at %s does not answer; serving with cold-start fallbacks until it does",
            redacted_url(settings.redis_url),
        )
    return store


async def _follow_store(settings: Settings, app: EncoreApp) -> StoreFollower:
    """Serve the store's head from the start when it answers (else none until it does), then follow it."""
    assert settings.experiments_store is not None
    try:
        store = open_store(settings.experiments_store, timeout_s=1.0)
    except (ValueError, ExperimentError) as exc:
        raise ConfigError(f"experiments_store: {exc}") from exc
    metrics = app.metrics
    follower = StoreFollower(
        store,
        lambda: app.bundle.models.keys(),
        app.apply_experiments,
        reloads=metrics.experiment_reloads,
        revision_gauge=metrics.experiments_revision,
        store_up=metrics.experiments_store_up,
        propagation=metrics.experiments_propagation,
        interval_s=settings.experiments_store_poll_s,
    )
    await follower.poll_once()
    follower.start()
    return follower


def _experiments(settings: Settings, bundle: Bundle) -> ExperimentsConfig:
    if settings.experiments is None:
        return parse_experiments(None, "no experiments file")
    config = load_experiments(settings.experiments, known_models=bundle.models.keys())
    log.info("experiments: %d loaded from %s", len(config.all_experiments), settings.experiments)
    return config


async def _warm_up(pipelines: dict[Surface, PipelineExecutor], settings: Settings, bundle: Bundle) -> None:
    """Run every surface once end to end (thread pool, FAISS, ONNX, store) before SERVING."""
    users = bundle.load_users().user_ids
    generous = StageLimits(user_features=5.0, retrieval=5.0, scoring=5.0, reserve=0.0)
    for surface, pipeline in pipelines.items():
        config = settings.surfaces[surface]
        query = Query(
            request_id="warm-up",
            user_id=users[0] if users else "warm-up",
            surface=surface,
            limit=config.default_limit,
            params=config.params,
            seed_item=int(bundle.popularity[0]) if surface is Surface.NOW_PLAYING else None,
        )
        budget = Budget(surface_budget_s=30.0, client_timeout_s=None, limits=generous)
        # no exposures, no shadow metrics, no spans: not a request
        result = await pipeline.execute(query, budget, run_side_effects=False, traced=False)
        log.info(
            "warm-up %s: %d items in %.1f ms, degraded %s",
            surface.value,
            len(result.items),
            result.timings_ms["total"],
            list(result.degraded) or "none",
        )


def _check_shadow_models(settings: Settings, bundle: Bundle) -> None:
    for surface, config in settings.surfaces.items():
        shadow = config.params.shadow_model
        if shadow is not None and shadow not in bundle.models:
            raise ConfigError(
                f"surfaces.{surface.value}.shadow_model: {shadow!r} is not a model of bundle {bundle.version} "
                f"(it has {', '.join(sorted(bundle.models))})"
            )


def _log_cascade(settings: Settings, bundle: Bundle) -> None:
    """Say per surface whether scoring runs as a cascade (a bundle without a light model has none)."""
    for surface, config in settings.surfaces.items():
        size = config.params.cascade_size
        if size > 0 and bundle.light_model is not None:
            log.info(
                "%s: scoring cascade: %s scores every candidate, the request's model its best %d",
                surface.value,
                bundle.light_model,
                size,
            )
        elif size > 0:
            log.info("%s: no scoring cascade: bundle %s has no light model", surface.value, bundle.version)


def _capture_log(settings: Settings, metrics: Metrics) -> BackgroundWriter[CapturedRank] | None:
    if settings.capture_fraction <= 0:
        return None
    sink: BackgroundWriter[CapturedRank] = BackgroundWriter(
        capture_files(settings.capture_dir, max_bytes=settings.capture_file_mb << 20),
        encode_delimited,
        lambda reason, records: metrics.captures_dropped.labels(reason).inc(len(records)),
        written=lambda records: metrics.captures.inc(len(records)),
    )
    sink.start()
    log.info("capturing %.1f %% of users' Rank exchanges to %s/", 100 * settings.capture_fraction, settings.capture_dir)
    return sink


def _exposure_log(settings: Settings, metrics: Metrics) -> ExposureLog | None:
    if settings.exposure_log_dir is None:
        log.info("exposure logging disabled (exposure_log_dir is null)")
        return None
    writer = exposure_files(settings.exposure_log_dir, max_bytes=settings.exposure_file_mb << 20)
    exposures = ExposureLog(
        writer,
        exposures=metrics.exposures,
        dropped=metrics.exposures_dropped,
        queue_size=settings.exposure_queue_size,
    )
    exposures.start()
    log.info("exposures logged to %s/", settings.exposure_log_dir)
    return exposures


def _outcome_log(settings: Settings, metrics: Metrics) -> OutcomeLog | None:
    if settings.outcome_log_dir is None:
        log.info("outcome logging disabled (outcome_log_dir is null)")
        return None
    outcomes = OutcomeLog(
        outcome_files(settings.outcome_log_dir, max_bytes=settings.outcome_file_mb << 20),
        outcomes=metrics.outcomes,
        dropped=metrics.outcomes_dropped,
        queue_size=settings.outcome_queue_size,
    )
    outcomes.start()
    log.info("outcomes logged to %s/", settings.outcome_log_dir)
    return outcomes


@asynccontextmanager
async def lifespan(
    settings: Settings, bundle: Bundle | None = None, *, span_exporter: SpanExporter | None = None
) -> AsyncIterator[EncoreApp]:
    """Build the app; raises ``BundleError``/``ConfigError``/``ExperimentConfigError`` on bad input.

    ``bundle``: an already loaded bundle (a worker process inherits its parent's, so the FAISS
    index and item arrays are shared, not copied); loaded from ``settings.bundle`` when None.
    ``span_exporter``: with ``tracing`` on, spans go there as they end instead of to the OTLP
    collector (``serving.tracing.build_tracing``; tests).
    """
    started = time.perf_counter()
    faiss.omp_set_num_threads(1)
    bundle = bundle if bundle is not None else load_bundle(settings.bundle)
    _check_shadow_models(settings, bundle)
    _log_cascade(settings, bundle)
    experiments = _experiments(settings, bundle)
    metrics = Metrics()
    executor = ThreadPoolExecutor(max_workers=settings.cpu_threads, thread_name_prefix="encore-cpu")
    store = await _open_store(settings, bundle)
    exposures = _exposure_log(settings, metrics)
    outcomes = _outcome_log(settings, metrics)
    capture = _capture_log(settings, metrics)
    tracing = build_tracing(settings, span_exporter)
    app: EncoreApp | None = None
    try:
        builder = StateBuilder(settings, store, metrics, executor, exposures, tracing)
        state = await builder.build(bundle)
        metrics.bundle_info.labels(bundle.version, bundle.default_model).set(1)
        app = EncoreApp(
            settings=settings,
            state=state,
            store=store,
            metrics=metrics,
            assigner=Assigner(experiments),
            builder=builder,
            admission=AdmissionController(settings.admission),
            capture=capture,
            outcomes=outcomes,
            tracing=tracing,
        )
        app.apply_experiments(experiments)
        if settings.experiments is not None:
            app.reloader = ExperimentsReloader(
                settings.experiments,
                lambda: app.bundle.models.keys() if app is not None else (),
                app.apply_experiments,
                metrics.experiment_reloads,
                interval_s=settings.experiments_reload_s,
            )
            app.reloader.start()
        if settings.experiments_store is not None:
            app.store_follower = await _follow_store(settings, app)
        app.bundle_reloader = BundleReloader(
            settings.bundle, app.reload_bundle, metrics.bundle_reloads, interval_s=settings.bundle_reload_s
        )
        if settings.bundle_reload_s > 0:  # else reloads only on demand (SIGHUP, admin Reload)
            app.bundle_reloader.start()
        log.info(
            "bundle %s ready: %d items, models %s (default %s) in %.1f s",
            bundle.version,
            len(bundle.catalog),
            sorted(bundle.models),
            bundle.default_model,
            time.perf_counter() - started,
        )
        yield app
        for pipeline in app.state.pipelines.values():
            await pipeline.drain_side_effects()
    finally:
        if app is not None and app.reloader is not None:
            await app.reloader.close()
        if app is not None and app.store_follower is not None:
            await app.store_follower.close()
        if app is not None and app.bundle_reloader is not None:
            await app.bundle_reloader.close()
        if exposures is not None:
            await exposures.close()
        if outcomes is not None:
            await outcomes.close()
        if capture is not None:
            await capture.close()
        await store.close()
        executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(tracing.shutdown)  # the last spans (bounded: an absent collector cannot hang it)
