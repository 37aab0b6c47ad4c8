"""The reference servicer: Encore's Home components called in straight-line order, one coroutine per call.

``Rank`` (Home only): validate (``serving.requests.parse_rank_request``, the surface's settings) →
user features (one Redis read) → the Home sources in declaration order, concatenated → the Home
filters in order (duplicates keep the first occurrence) → candidate features → the bundle's
default model on every row, inline → artist-cap selection → response. No budget and no fallback:
Redis may take up to ``STORE_TIMEOUT_S``, and a failed read answers UNAVAILABLE instead of
degrading. Now Playing answers UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import grpc
import numpy as np

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from features.store import FeatureStore
from models.bundle import Bundle
from ranking.pipeline import PipelineDeclaration
from ranking.types import Candidates
from serving.config import Settings
from serving.errors import status_for
from serving.requests import parse_events, parse_rank_request

log = logging.getLogger(__name__)

NOW_PLAYING_REFUSED = "the reference server ranks SURFACE_HOME only (it is a benchmark reference, not a product)"
#: Every Redis call's timeout: a bound against a dead store, not a budget (there is none).
STORE_TIMEOUT_S = 1.0


class StraightLineServicer(pb_grpc.RankingServiceServicer):
    """``encore.v1.RankingService`` over ``home`` (Encore's Home declaration) and one ONNX session."""

    def __init__(
        self, bundle: Bundle, settings: Settings, store: FeatureStore, home: PipelineDeclaration, session: Any
    ) -> None:
        self._bundle = bundle
        self._settings = settings
        self._store = store
        self._home = home
        self._session = session
        self._input_name = bundle.models[bundle.default_model].input_name
        self._source_names = tuple(s.name for s in home.sources)

    async def rank(self, request: pb.RankRequest) -> pb.RankResponse:
        """Home ranking for ``request`` without timings (raises ``InvalidRequest``, store errors)."""
        d, catalog = self._home, self._bundle.catalog
        query = parse_rank_request(request, self._settings, catalog.index_of, request.request_id)
        user = await d.user_hydrator.hydrate(query, STORE_TIMEOUT_S)
        candidates = Candidates.concat(
            [await s.fetch(query, user, i) for i, s in enumerate(d.sources) if s.enabled(query)]
        )
        for f in d.filters:
            if f.enabled(query):
                candidates = f.apply(query, user, candidates).kept
        features = d.candidate_hydrator.hydrate(query, user, candidates)
        if len(candidates):
            scores = np.asarray(self._session.run(None, {self._input_name: features})[0], np.float32).reshape(-1)
        else:
            scores = np.empty(0, dtype=np.float32)
        selected = d.selector.select(query, candidates, scores).selected
        response = pb.RankResponse(
            request_id=request.request_id, model_version=self._bundle.default_model, bundle_version=self._bundle.version
        )
        for position, row in enumerate(selected):
            response.items.add(
                item_id=catalog.item_id(int(candidates.items[row])),
                score=float(scores[row]),
                position=position,
                source=self._source_names[int(candidates.source_ids[row])],
            )
        return response

    async def Rank(self, request: pb.RankRequest, context: grpc.aio.ServicerContext) -> pb.RankResponse:  # type: ignore[type-arg]
        started = time.perf_counter()
        if request.surface == pb.SURFACE_NOW_PLAYING:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOW_PLAYING_REFUSED)
        try:
            response = await self.rank(request)
        except Exception as exc:
            await _abort(context, "Rank", exc)
        if request.debug:
            response.timings.add(stage="total", milliseconds=(time.perf_counter() - started) * 1000.0)
        return response

    async def RecordEvents(
        self,
        request: pb.RecordEventsRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.RecordEventsResponse:
        try:
            events = parse_events(request, self._settings, self._bundle.catalog.index_of)
            await self._store.record_events(request.user_id, events.plays, events.skips, STORE_TIMEOUT_S)
        except Exception as exc:
            await _abort(context, "RecordEvents", exc)
        return pb.RecordEventsResponse(accepted=len(request.events))


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> NoReturn:  # type: ignore[type-arg]
    """End the RPC with Encore's status mapping (``serving.errors.status_for``); log internal errors."""
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("%s failed", method, exc_info=exc)
    await context.abort(code, message)
    raise AssertionError("unreachable: ServicerContext.abort raises")
