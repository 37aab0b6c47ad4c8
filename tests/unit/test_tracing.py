"""Tracing: one server span per Rank, one child span per pipeline stage, off by default."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from ranking import tracing as attrs
from ranking.observer import NullObserver
from ranking.pipeline import PipelineExecutor
from ranking.surfaces import home
from ranking.types import Candidates, FilterResult, Query, UserFeatures
from serving.app import lifespan
from serving.config import Settings, load_settings
from serving.errors import ConfigError
from serving.server import create_server, mark_serving
from serving.tracing import build_tracing
from tests.unit import fakes

RANK = "/encore.v1.RankingService/Rank"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7


def _settings(bundle: Path, **changes: Any) -> Settings:
    base = load_settings(bundle)
    return replace(base, exposure_log_dir=None, outcome_log_dir=None, bundle_reload_s=0.0, metrics_port=None, **changes)


async def _rank_through_server(
    settings: Settings, exporter: InMemorySpanExporter, metadata: Sequence[tuple[str, str]] = ()
) -> pb.RankResponse:
    """One Rank (and one health check) through a real in-process server built by the lifespan."""
    async with lifespan(settings, span_exporter=exporter) as app:
        server, port, health = await create_server(app, "127.0.0.1", 0)
        await server.start()
        await mark_serving(health, True)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert check.status == health_pb2.HealthCheckResponse.SERVING
                user = app.bundle.load_users().user_ids[0]
                request = pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME, limit=5, request_id="trace-me-1")
                reply: pb.RankResponse = await pb_grpc.RankingServiceStub(channel).Rank(
                    request, timeout=5, metadata=tuple(metadata)
                )
                return reply
        finally:
            await server.stop(1.0)


def _by_name(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


async def test_a_rank_call_is_one_server_span_with_a_child_span_per_stage_in_order(tiny_bundle_path: Path) -> None:
    exporter = InMemorySpanExporter()
    reply = await _rank_through_server(_settings(tiny_bundle_path, tracing=True), exporter)

    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == [RANK]  # the health check is not traced, the warm-up neither
    request = servers[0]
    assert request.parent is None
    assert request.context is not None
    stages = sorted((s for s in spans if s.kind is SpanKind.INTERNAL), key=lambda s: s.start_time or 0)
    assert [s.name for s in stages] == list(attrs.STAGES)
    assert len(spans) == 1 + len(attrs.STAGES)
    for stage in stages:
        assert stage.context is not None and stage.parent is not None
        assert stage.context.trace_id == request.context.trace_id
        assert stage.parent.span_id == request.context.span_id
        assert (request.start_time or 0) <= (stage.start_time or 0) <= (stage.end_time or 0) <= (request.end_time or 0)
        assert stage.attributes is not None
        assert stage.attributes[attrs.SURFACE] == "home"
        assert stage.attributes[attrs.STAGE] == stage.name
        assert stage.attributes[attrs.REQUEST_ID] == "trace-me-1"
        assert stage.attributes[attrs.DEGRADED] is False
    for earlier, later in itertools.pairwise(stages):
        assert (earlier.end_time or 0) <= (later.start_time or 0)  # sequential, not overlapping

    by_name = _by_name(stages)
    retrieved = by_name["retrieval"].attributes or {}
    filtered = by_name["filters"].attributes or {}
    scoring = by_name["scoring"].attributes or {}
    selection = by_name["selection"].attributes or {}
    assert int(str(retrieved[attrs.CANDIDATES_OUT])) > len(reply.items)
    assert filtered[attrs.CANDIDATES_IN] == retrieved[attrs.CANDIDATES_OUT]
    removed = sum(int(str(v)) for k, v in filtered.items() if k.startswith(attrs.REMOVED_PREFIX))
    assert filtered[attrs.CANDIDATES_OUT] == int(str(filtered[attrs.CANDIDATES_IN])) - removed
    assert scoring[attrs.MODEL_VERSION] == reply.model_version != ""
    assert selection[attrs.CANDIDATES_IN] == filtered[attrs.CANDIDATES_OUT]
    assert selection[attrs.CANDIDATES_OUT] == len(reply.items) == 5

    assert request.attributes is not None
    assert request.attributes["rpc.method"] == "Rank"
    assert request.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert request.attributes[attrs.SURFACE] == "home"
    assert request.attributes[attrs.REQUEST_ID] == reply.request_id == "trace-me-1"
    assert request.attributes[attrs.MODEL_VERSION] == reply.model_version
    assert request.attributes[attrs.ITEMS] == 5
    assert tuple(request.attributes[attrs.DEGRADED]) == tuple(reply.degraded) == ()  # type: ignore[arg-type]


async def test_the_server_span_continues_the_callers_trace(tiny_bundle_path: Path) -> None:
    exporter = InMemorySpanExporter()
    traceparent = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
    await _rank_through_server(_settings(tiny_bundle_path, tracing=True), exporter, [("traceparent", traceparent)])

    spans = exporter.get_finished_spans()
    assert len(spans) == 1 + len(attrs.STAGES)
    assert {s.context.trace_id for s in spans if s.context is not None} == {TRACE_ID}
    (request,) = (s for s in spans if s.kind is SpanKind.SERVER)
    assert request.parent is not None and request.parent.is_remote
    assert request.parent.span_id == PARENT_ID


async def test_tracing_off_records_no_span(tiny_bundle_path: Path) -> None:
    exporter = InMemorySpanExporter()
    reply = await _rank_through_server(_settings(tiny_bundle_path), exporter)  # tracing: false, the default
    assert len(reply.items) == 5
    assert exporter.get_finished_spans() == ()


def test_a_sample_ratio_of_zero_records_no_new_trace(tiny_bundle_path: Path) -> None:
    exporter = InMemorySpanExporter()
    traced = build_tracing(_settings(tiny_bundle_path, tracing=True, trace_sample_ratio=0.0), exporter)
    with traced.tracer.start_as_current_span("root") as span:
        assert not span.is_recording()
    traced.shutdown()
    assert exporter.get_finished_spans() == ()
    assert not build_tracing(_settings(tiny_bundle_path)).enabled


def test_shutdown_with_no_collector_gives_up_after_its_timeout(tiny_bundle_path: Path) -> None:
    # a closed loopback port: the exporter's retries must not hold the process past the timeout
    traced = build_tracing(_settings(tiny_bundle_path, tracing=True, otlp_endpoint="http://127.0.0.1:9"))
    with traced.tracer.start_as_current_span("queued"):
        pass
    started = time.monotonic()
    traced.shutdown(timeout_s=0.5)
    assert time.monotonic() - started < 15.0  # bounded (the exporter alone retries ~60 s); generous: a busy machine
    assert "encore-tracing-shutdown" not in {t.name for t in threading.enumerate()}  # nothing left retrying


# --- the executor alone (fakes): attributes on failures, log records inside the stage span ---------------


def _sdk() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


class _SpanOfRecord(logging.Handler):
    """Remembers the span current when each record was emitted (what a JSON formatter would read)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.span_ids: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.span_ids.append(trace.get_current_span().get_span_context().span_id)


async def test_a_degraded_stage_is_marked_and_its_log_line_is_emitted_inside_its_span() -> None:
    tracer, exporter = _sdk()
    executor = PipelineExecutor(home.declare(fakes.components(fakes.FailingStore())), NullObserver(), tracer=tracer)
    handler = _SpanOfRecord()
    logging.getLogger("ranking.pipeline").addHandler(handler)
    try:
        with tracer.start_as_current_span("request"):
            result = await executor.execute(fakes.query(), fakes.budget())
    finally:
        logging.getLogger("ranking.pipeline").removeHandler(handler)
    assert result.degraded == ("user_features",)
    spans = _by_name(exporter.get_finished_spans())
    user = spans["user_features"]
    assert user.attributes is not None and user.attributes[attrs.DEGRADED] is True
    assert (spans["retrieval"].attributes or {})[attrs.DEGRADED] is False
    assert user.context is not None and handler.span_ids == [user.context.span_id]
    request = spans["request"].attributes or {}
    assert tuple(request[attrs.DEGRADED]) == ("user_features",)  # type: ignore[arg-type]
    assert request[attrs.REQUEST_ID] == "test"


class _LosingFilter:
    name = "loses_one"

    def enabled(self, query: Query) -> bool:
        return True

    def apply(self, query: Query, user: UserFeatures, candidates: Candidates) -> FilterResult:
        rows = np.arange(len(candidates), dtype=np.int64)
        return FilterResult(kept=candidates.take(rows[1:]), removed=candidates.take(rows[:0]))  # one row lost


async def test_a_stage_that_raises_ends_its_span_with_an_error_status() -> None:
    tracer, exporter = _sdk()
    declaration = home.declare(fakes.components(await fakes.seeded_store()))
    declaration = replace(declaration, filters=(*declaration.filters, _LosingFilter()))
    executor = PipelineExecutor(declaration, NullObserver(), tracer=tracer)
    with pytest.raises(Exception, match="loses_one"):
        await executor.execute(fakes.query(), fakes.budget())
    spans = _by_name(exporter.get_finished_spans())
    assert list(spans) == ["user_features", "retrieval", "filters"]
    assert spans["filters"].status.status_code is StatusCode.ERROR
    assert [e.name for e in spans["filters"].events] == ["exception"]


async def test_no_span_without_a_tracer_or_for_an_untraced_run() -> None:
    tracer, exporter = _sdk()
    store = await fakes.seeded_store()
    untraced = PipelineExecutor(home.declare(fakes.components(store)), NullObserver())  # the default: no tracer
    traced = PipelineExecutor(home.declare(fakes.components(store)), NullObserver(), tracer=tracer)
    with tracer.start_as_current_span("request"):
        await untraced.execute(fakes.query(), fakes.budget())
        await traced.execute(fakes.query(), fakes.budget(), traced=False)  # the start-up warm-up
    (request,) = exporter.get_finished_spans()
    assert request.name == "request" and not dict(request.attributes or {})


# --- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("tracing: yes please", "tracing: expected bool"),
        ("trace_sample_ratio: 1.5", "trace_sample_ratio: must be in 0..1"),
        ("trace_sample_ratio: -0.1", "trace_sample_ratio: must be in 0..1"),
        ("otlp_endpoint: collector:4317", "otlp_endpoint: must be http://host:port"),
        ("otlp_endpoint: http://collector", "otlp_endpoint: must be http://host:port"),
        ("otlp_endpoint: grpc://collector:4317", "otlp_endpoint: must be http://host:port"),
        ("otlp_endpoint: http://collector:99999", "otlp_endpoint: must be http://host:port"),
    ],
)
def test_bad_tracing_settings_are_refused_naming_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path / "bundle", config)


def test_tracing_settings_default_off_and_load(tmp_path: Path) -> None:
    defaults = load_settings(tmp_path / "bundle")
    assert (defaults.tracing, defaults.otlp_endpoint, defaults.trace_sample_ratio) == (False, None, 1.0)
    config = tmp_path / "settings.yaml"
    config.write_text("tracing: true\notlp_endpoint: https://collector.example:4317\ntrace_sample_ratio: 0.25\n")
    loaded = load_settings(tmp_path / "bundle", config)
    assert (loaded.tracing, loaded.otlp_endpoint, loaded.trace_sample_ratio) == (
        True,
        "https://collector.example:4317",
        0.25,
    )
