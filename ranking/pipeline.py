"""The pipeline declaration and the one executor that runs every surface.

Ordering, concurrency, per-stage timeouts, fail-open policy, per-stage observations and the side
effects live here and nowhere else. Stage order: user features → retrieval (all sources
concurrently) → filters → candidate features → scoring (one batch) → selection; then the executor
itself schedules the side effects (``execute`` returns without waiting for them; callers never
start them). At most ``max_side_effect_tasks`` run at once per executor; past that a side effect
is dropped and counted in ``side_effects_dropped``. ``drain_side_effects`` waits for them
(shutdown, bundle swap, tests).

Fail-open policy (each fallback is listed in ``RankResult.degraded`` and reported to the observer):

- ``user_features``: the hydrator failed or timed out → cold-start features.
- ``retrieval``: a source failed or timed out → the other sources' candidates (popularity is
  in-process and always present).
- ``scoring``: the scorer failed or timed out → retrieval order.

Disabled components (``enabled(query)`` is False) are skipped by design, never marked degraded:

- user hydrator → its ``fallback`` (cold-start) features, without a store round trip.
- source / filter → not run (no candidates from it / nothing removed).
- candidate hydrator → no features, so scoring is skipped too: retrieval order, model version "".
- scorer → retrieval order, model version "".
- selector → the top ``query.limit`` rows by score (ties: retrieval order), the rest held back.
- side effect → not scheduled.

``RankResult.scoring_inputs`` (for shadow scoring) is set only when the scorer really scored.

Tracing: with a recording ``tracer`` (``ranking.tracing``), each stage runs inside its own span
(current while it runs, children of the caller's current span, which gets the request-level
attributes); the default tracer records nothing.

Errors: ``DeadlineExceeded`` when the budget is spent before the pipeline starts, or when the
client's own deadline has passed by the time the answer is ready (nobody is waiting for it; no
side effect runs). Untimed (in-process) sources run even when the retrieval slice is zero, so a
tight deadline still gets the popularity fallback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace

from common.errors import InternalError
from ranking import tracing
from ranking.budget import Budget, DeadlineExceeded
from ranking.observer import PipelineObserver
from ranking.stages import (
    CandidateHydrator,
    CandidateSource,
    Filter,
    Scorer,
    Selector,
    SideEffect,
    UserHydrator,
)
from ranking.types import (
    F32,
    Candidates,
    Query,
    RankResult,
    ScoredItem,
    ScoringInputs,
    Selection,
    Surface,
    UserFeatures,
)

log = logging.getLogger(__name__)

#: At most one "degraded" log line per stage per this many seconds (the metric counts them all).
DEGRADED_LOG_INTERVAL_S = 1.0


class ConservationError(InternalError):
    """A filter or selector lost or invented candidates (a programming error, fails loudly)."""


@dataclass(frozen=True)
class PipelineDeclaration:
    """A surface's components per stage; the executor owns how they run."""

    surface: Surface
    user_hydrator: UserHydrator
    sources: tuple[CandidateSource, ...]
    filters: tuple[Filter, ...]
    candidate_hydrator: CandidateHydrator
    scorer: Scorer
    selector: Selector
    side_effects: tuple[SideEffect, ...] = ()


class PipelineExecutor:
    """Runs one ``PipelineDeclaration`` for a query within its ``Budget``."""

    def __init__(
        self,
        declaration: PipelineDeclaration,
        observer: PipelineObserver,
        *,
        max_side_effect_tasks: int = 1000,
        tracer: trace.Tracer = tracing.NO_TRACER,
    ) -> None:
        self.declaration = declaration
        self._observer = observer
        self._surface = declaration.surface.value
        self._tracer = tracer
        self._traced = tracing.is_recording(tracer)
        #: tracing off: one reusable do-nothing block per stage (the no-op tracer's costs ~3 µs a stage)
        self._no_span: AbstractContextManager[trace.Span] = nullcontext(trace.INVALID_SPAN)
        # built once: the attributes every span of a stage starts with (the SDK copies them)
        self._stage_attributes = {
            stage: {tracing.SURFACE: self._surface, tracing.STAGE: stage} for stage in tracing.STAGES
        }
        self._source_names = tuple(s.name for s in declaration.sources)
        self._side_effect_tasks: set[asyncio.Task[None]] = set()
        self._max_side_effect_tasks = max_side_effect_tasks
        self.side_effects_dropped = 0
        self._last_degraded_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    async def execute(
        self, query: Query, budget: Budget, *, run_side_effects: bool = True, traced: bool = True
    ) -> RankResult:
        """Rank for ``query``, then schedule the side effects (not awaited; ``run_side_effects=False``
        skips them, e.g. for the start-up warm-up; ``traced=False`` records no span, ditto). Raises
        ``DeadlineExceeded`` only when no time is left at all or the client's deadline has passed."""
        budget.require("ranking")
        d = self.declaration
        timings: dict[str, float] = {}
        degraded: list[str] = []
        started = time.perf_counter()
        traced = traced and self._traced
        request_span = trace.get_current_span() if traced else trace.INVALID_SPAN
        if request_span.is_recording():
            request_span.set_attributes({tracing.SURFACE: self._surface, tracing.REQUEST_ID: query.request_id})

        clock = time.perf_counter()
        with self._span("user_features", traced) as span:
            user = await self._hydrate_user(query, budget, degraded)
            if span.is_recording():
                self._annotate(span, "user_features", query, degraded)
        clock = self._timed("user_features", clock, timings)

        with self._span("retrieval", traced) as span:
            candidates = await self._retrieve(query, user, budget, degraded)
            if span.is_recording():
                self._annotate(span, "retrieval", query, degraded, n_out=len(candidates))
        clock = self._timed("retrieval", clock, timings)

        removed_by_filter: dict[str, int] = {}
        with self._span("filters", traced) as span:
            n_in = len(candidates)
            for component in d.filters:
                if not component.enabled(query):
                    continue
                result = component.apply(query, user, candidates)
                if len(result.kept) + len(result.removed) != len(candidates):
                    raise ConservationError(
                        f"filter {component.name}: {len(candidates)} in, "
                        f"{len(result.kept)} kept + {len(result.removed)} removed"
                    )
                removed_by_filter[component.name] = len(result.removed)
                self._observer.filtered(self._surface, component.name, len(result.removed))
                candidates = result.kept
            if span.is_recording():
                self._annotate(span, "filters", query, degraded, n_in=n_in, n_out=len(candidates))
                for name, count in removed_by_filter.items():
                    span.set_attribute(tracing.REMOVED_PREFIX + name, count)
        clock = self._timed("filters", clock, timings)

        with self._span("candidate_features", traced) as span:
            hydrated = d.candidate_hydrator.enabled(query)
            features = (
                d.candidate_hydrator.hydrate(query, user, candidates)
                if hydrated
                else np.empty((len(candidates), 0), dtype=np.float32)
            )
            if span.is_recording():
                n = len(candidates)
                self._annotate(span, "candidate_features", query, degraded, n_in=n, n_out=n)
        clock = self._timed("candidate_features", clock, timings)

        with self._span("scoring", traced) as span:
            if hydrated and d.scorer.enabled(query):
                scores, model_version = await self._score(query, candidates, features, budget, degraded)
                scored = "scoring" not in degraded
            else:  # skipped by design: retrieval order, not a degradation
                scores, model_version, scored = _retrieval_order(len(candidates)), "", False
            if span.is_recording():
                n = len(candidates)
                self._annotate(span, "scoring", query, degraded, n_in=n, n_out=n)
                span.set_attribute(tracing.MODEL_VERSION, model_version)
        clock = self._timed("scoring", clock, timings)

        with self._span("selection", traced) as span:
            selection = (
                d.selector.select(query, candidates, scores)
                if d.selector.enabled(query)
                else _top_by_score(scores, query.limit)
            )
            if len(selection.selected) + len(selection.held_back) != len(candidates):
                raise ConservationError(f"selector {d.selector.name} did not account for every candidate")
            if span.is_recording():
                self._annotate(span, "selection", query, degraded, n_in=len(candidates), n_out=len(selection.selected))
        self._timed("selection", clock, timings)

        items = tuple(
            ScoredItem(
                item=int(candidates.items[row]),
                score=float(scores[row]),
                source=self._source_names[int(candidates.source_ids[row])],
            )
            for row in selection.selected
        )
        if request_span.is_recording():
            request_span.set_attributes(
                {
                    tracing.DEGRADED: tuple(degraded),
                    tracing.MODEL_VERSION: model_version,
                    tracing.ITEMS: len(items),
                    tracing.EXPERIMENTS: tuple(f"{a.experiment}:{a.variant}" for a in query.assignments),
                }
            )
        if budget.client_bound and budget.remaining() <= 0:
            raise DeadlineExceeded(f"answer not ready within the client's {budget.total_s * 1000:.1f} ms deadline")
        timings["total"] = (time.perf_counter() - started) * 1000.0
        self._observer.stage_latency(self._surface, "total", timings["total"] / 1000.0)
        ranked = RankResult(
            items=items,
            model_version=model_version,
            degraded=tuple(degraded),
            timings_ms=timings,
            removed_by_filter=removed_by_filter,
            scoring_inputs=ScoringInputs(candidates, features) if query.params.shadow_model and scored else None,
        )
        if run_side_effects:
            self._spawn_side_effects(query, ranked)
        return ranked

    def _span(self, stage: str, traced: bool) -> AbstractContextManager[trace.Span]:
        """The stage's span, current until the block ends (records and re-raises an exception)."""
        if not traced:
            return self._no_span
        return self._tracer.start_as_current_span(stage, attributes=self._stage_attributes[stage])

    @staticmethod
    def _annotate(
        span: trace.Span,
        stage: str,
        query: Query,
        degraded: list[str],
        *,
        n_in: int | None = None,
        n_out: int | None = None,
    ) -> None:
        span.set_attribute(tracing.REQUEST_ID, query.request_id)
        span.set_attribute(tracing.DEGRADED, stage in degraded)
        if n_in is not None:
            span.set_attribute(tracing.CANDIDATES_IN, n_in)
        if n_out is not None:
            span.set_attribute(tracing.CANDIDATES_OUT, n_out)

    def _spawn_side_effects(self, query: Query, result: RankResult) -> None:
        """Schedule side effects to run after the response; never awaited, never raising."""
        for effect in self.declaration.side_effects:
            try:
                if not effect.enabled(query):
                    continue
            except Exception:
                log.exception("side effect %s: enabled() failed (request %s)", effect.name, query.request_id)
                continue
            if len(self._side_effect_tasks) >= self._max_side_effect_tasks:
                self.side_effects_dropped += 1
                continue
            task = asyncio.get_running_loop().create_task(self._run_side_effect(effect, query, result))
            self._side_effect_tasks.add(task)
            task.add_done_callback(self._side_effect_tasks.discard)

    async def drain_side_effects(self) -> None:
        """Wait for scheduled side effects (shutdown and tests)."""
        if self._side_effect_tasks:
            await asyncio.gather(*self._side_effect_tasks, return_exceptions=True)

    async def _run_side_effect(self, effect: SideEffect, query: Query, result: RankResult) -> None:
        try:
            await effect.run(query, result)
        except Exception:
            log.exception("side effect %s failed (request %s)", effect.name, query.request_id)

    def _timed(self, stage: str, since: float, timings: dict[str, float]) -> float:
        now = time.perf_counter()
        timings[stage] = (now - since) * 1000.0
        self._observer.stage_latency(self._surface, stage, now - since)
        return now

    def _degrade(self, stage: str, degraded: list[str], query: Query, reason: BaseException) -> None:
        if stage not in degraded:
            degraded.append(stage)
            self._observer.degraded(self._surface, stage)
        # one log line per stage per interval, with a count: an outage must not flood the log
        now = time.monotonic()
        if now - self._last_degraded_log.get(stage, -DEGRADED_LOG_INTERVAL_S) >= DEGRADED_LOG_INTERVAL_S:
            suppressed = self._suppressed.pop(stage, 0)
            self._last_degraded_log[stage] = now
            log.warning(
                "request %s: %s degraded: %r%s",
                query.request_id,
                stage,
                reason,
                f" ({suppressed} more since the last report)" if suppressed else "",
                extra={"stage": stage},  # a field of JSON log lines (serving.request_context)
            )
        else:
            self._suppressed[stage] = self._suppressed.get(stage, 0) + 1

    async def _hydrate_user(self, query: Query, budget: Budget, degraded: list[str]) -> UserFeatures:
        hydrator = self.declaration.user_hydrator
        if not hydrator.enabled(query):
            return hydrator.fallback(query)
        timeout = budget.for_stage("user_features")
        try:
            async with asyncio.timeout(timeout):
                return await hydrator.hydrate(query, timeout)
        except Exception as exc:  # dependency failure or timeout: fail open
            self._degrade("user_features", degraded, query, exc)
            return hydrator.fallback(query)

    async def _retrieve(self, query: Query, user: UserFeatures, budget: Budget, degraded: list[str]) -> Candidates:
        timeout = budget.for_stage("retrieval")
        active = [(i, s) for i, s in enumerate(self.declaration.sources) if s.enabled(query)]
        results: dict[int, Candidates] = {}

        async def fetch(i: int, source: CandidateSource) -> None:
            try:
                if source.timed:
                    async with asyncio.timeout(timeout):
                        results[i] = await source.fetch(query, user, i)
                else:
                    results[i] = await source.fetch(query, user, i)
            except Exception as exc:
                self._degrade("retrieval", degraded, query, exc)

        if sum(s.timed for _, s in active) > 1:  # several sources that wait: overlap them
            await asyncio.gather(*(fetch(i, s) for i, s in active))
        else:  # nothing to overlap: no tasks
            for i, s in active:
                await fetch(i, s)
        return Candidates.concat([results[i] for i, _ in active if i in results])

    async def _score(
        self, query: Query, candidates: Candidates, features: F32, budget: Budget, degraded: list[str]
    ) -> tuple[F32, str]:
        n = len(candidates)
        scorer = self.declaration.scorer
        if n == 0:
            return np.empty(0, dtype=np.float32), scorer.model_version(query)
        try:
            if budget.remaining() <= 0:
                raise DeadlineExceeded("no time left for scoring")
            async with asyncio.timeout(budget.for_stage("scoring")):
                scores = await scorer.score(query, features)
            if scores.shape != (n,):
                raise ValueError(f"scorer {scorer.name} returned shape {scores.shape} for {n} candidates")
            return scores, scorer.model_version(query)
        except Exception as exc:
            self._degrade("scoring", degraded, query, exc)
            return _retrieval_order(n), ""


def _retrieval_order(n: int) -> F32:
    """Scores that keep the candidates in retrieval order (descending, distinct)."""
    return np.linspace(1.0, 0.0, num=n, endpoint=False, dtype=np.float32)


def _top_by_score(scores: F32, limit: int) -> Selection:
    """The selection of a disabled selector: the best ``limit`` rows by score (ties: input order)."""
    order = np.argsort(-scores, kind="stable")
    return Selection(selected=order[:limit].astype(np.int64), held_back=np.sort(order[limit:]).astype(np.int64))
