"""The gRPC servicer: thin translation between protos and the domain; errors mapped at the edge.

The request id is bound before a handler runs (``serving.interceptors.RequestIdInterceptor``);
handlers read it with ``current_request_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import NoReturn

import grpc

from encore.v1 import capture_pb2
from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from features.store import FeatureStoreTimeout
from models.bundle import Bundle
from ranking.budget import Budget, DeadlineExceeded
from ranking.types import RankResult
from serving.app import EncoreApp
from serving.capture import in_capture_sample
from serving.errors import status_for
from serving.experiments.assignment import Assignment
from serving.experiments.outcome_log import OutcomeEvent
from serving.metrics import Metrics
from serving.request_context import current_request_id
from serving.requests import parse_events, parse_rank_request, surface_of

log = logging.getLogger(__name__)

#: The outcome-log metric of each event type ``parse_events`` accepts.
_OUTCOME_METRICS = {pb.EVENT_TYPE_PLAY: "stream", pb.EVENT_TYPE_SKIP: "skip", pb.EVENT_TYPE_LIKE: "like"}


async def _abort(
    context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    metrics: Metrics,
    method: str,
    code: grpc.StatusCode,
    message: str,
) -> NoReturn:
    """End the RPC with ``code``; programming errors are logged with their traceback.

    When the client's deadline has passed or it cancelled, nobody is waiting for the answer and gRPC
    could not send it: the call is dropped quietly (``CancelledError``, which gRPC logs at debug)
    and counted in ``encore_expired_requests_total``."""
    remaining = context.time_remaining()
    if context.cancelled() or (remaining is not None and remaining <= 0):
        metrics.expired.labels(method).inc()
        raise asyncio.CancelledError(f"{method}: the client is gone ({code.name} not sent)")
    if code is grpc.StatusCode.INTERNAL:
        log.exception("%s failed", method)
    elif code is grpc.StatusCode.UNAVAILABLE:
        log.warning("%s: dependency unavailable: %s", method, message)
    await context.abort(code, message)
    raise AssertionError("unreachable: ServicerContext.abort raises")


class RankingServicer(pb_grpc.RankingServiceServicer):
    """Implements ``encore.v1.RankingService`` over an ``EncoreApp``."""

    def __init__(self, app: EncoreApp) -> None:
        self._app = app

    async def Rank(self, request: pb.RankRequest | None, context: grpc.aio.ServicerContext) -> pb.RankResponse:  # type: ignore[type-arg]
        app = self._app
        if request is None:  # the bytes did not decode (see server.add_ranking_service)
            app.metrics.request("Rank", "unknown", "INVALID_ARGUMENT", 0.0)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request: not a valid encore.v1.RankRequest")
        started = time.perf_counter()
        surface_label, outcome = "unknown", "OK"
        response: pb.RankResponse | None = None
        try:
            request_id = current_request_id()  # bound by RequestIdInterceptor
            surface_label = surface_of(request.surface).value
            state = app.state  # one bundle for the whole request, even across a reload
            query = parse_rank_request(request, app.settings, state.bundle.catalog.index_of, request_id)
            surface = query.surface
            params, assignments = app.params_for(query.user_id, surface)
            query = replace(query, params=params, assignments=assignments)
            budget = Budget(
                surface_budget_s=app.settings.surfaces[surface].budget_ms / 1000.0,
                client_timeout_s=context.time_remaining(),
                limits=app.settings.stages,
            )
            result = await state.pipelines[surface].execute(query, budget)  # side effects: scheduled, not awaited
            response = self._response(state.bundle, request_id, result, assignments, request.debug)
            return response
        except Exception as exc:
            code, message = status_for(exc)
            outcome = code.name
            await _abort(context, app.metrics, "Rank", code, message)
        finally:
            elapsed = time.perf_counter() - started
            app.metrics.request("Rank", surface_label, outcome, elapsed)
            if app.capture is not None and in_capture_sample(request.user_id, app.settings.capture_fraction):
                # after the response: the record is built on a later turn of the loop, written off it
                asyncio.get_running_loop().call_soon(
                    self._capture, time.time() - elapsed, request, response, elapsed, outcome
                )

    async def RecordEvents(
        self,
        request: pb.RecordEventsRequest | None,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.RecordEventsResponse:
        app = self._app
        if request is None:
            app.metrics.request("RecordEvents", "", "INVALID_ARGUMENT", 0.0)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request: not a valid encore.v1.RecordEventsRequest")
        started = time.perf_counter()
        received_ms = int(time.time() * 1000)  # the exposure log's clock
        outcome = "OK"
        try:
            current_request_id()  # refuses an over-long request id first, as Rank does
            events = parse_events(request, app.settings, app.bundle.catalog.index_of)
            remaining = context.time_remaining()
            client_bound = remaining is not None and remaining < app.store_timeout_s
            timeout = min(app.store_timeout_s, remaining) if remaining is not None else app.store_timeout_s
            try:
                await app.store.record_events(request.user_id, events.plays, events.skips, timeout)
            except FeatureStoreTimeout as exc:
                if not client_bound:
                    raise
                # the client's deadline, not the store, set the limit: say so (not UNAVAILABLE)
                raise DeadlineExceeded(
                    f"the client's deadline ({timeout * 1000:.1f} ms left) passed before the feature store "
                    "answered; the write may not have landed"
                ) from exc
            if app.outcomes is not None:  # only what the store accepted; never blocks or raises
                user_id = request.user_id
                app.outcomes.offer(
                    OutcomeEvent(received_ms, user_id, _OUTCOME_METRICS[e.type], 1.0, e.item_id, e.timestamp_ms)
                    for e in request.events
                )
            for kind, items in (("play", events.plays), ("skip", events.skips), ("like", events.likes)):
                if items:
                    app.metrics.events.labels(kind).inc(len(items))
            return pb.RecordEventsResponse(accepted=len(request.events))
        except Exception as exc:
            code, message = status_for(exc)
            outcome = code.name
            await _abort(context, app.metrics, "RecordEvents", code, message)
        finally:
            app.metrics.request("RecordEvents", "", outcome, time.perf_counter() - started)

    def _capture(
        self, started_s: float, request: pb.RankRequest, response: pb.RankResponse | None, elapsed_s: float, status: str
    ) -> None:
        capture = self._app.capture
        if capture is None:
            return
        record = capture_pb2.CapturedRank(
            ts_ms=int(started_s * 1000), request=request, server_latency_ms=elapsed_s * 1000.0, status=status
        )
        if response is not None:
            record.response.CopyFrom(response)
        if not record.request.request_id and response is not None:
            record.request.request_id = response.request_id
        capture.offer(record)

    def _response(
        self, bundle: Bundle, request_id: str, result: RankResult, assignments: tuple[Assignment, ...], debug: bool
    ) -> pb.RankResponse:
        catalog = bundle.catalog
        response = pb.RankResponse(
            request_id=request_id,
            model_version=result.model_version,
            bundle_version=bundle.version,
            degraded=list(result.degraded),
        )
        for position, item in enumerate(result.items):
            response.items.add(
                item_id=catalog.item_id(item.item), score=item.score, position=position, source=item.source
            )
        for a in assignments:
            response.assignments.add(experiment=a.experiment, variant=a.variant)
        if debug:
            for stage, ms in result.timings_ms.items():
                response.timings.add(stage=stage, milliseconds=ms)
        return response
