"""OpenTelemetry tracing, off by default: built once in the composition root, injected.

Settings (``serving.config``): ``tracing`` (off by default), ``otlp_endpoint`` (an OTLP/gRPC
collector, e.g. ``http://collector:4317``; ``http`` is plaintext, ``https`` TLS) and
``trace_sample_ratio`` (the share of new traces kept; a call that arrives with a W3C
``traceparent`` follows its caller's decision). ``build_tracing`` makes one SDK ``TracerProvider``
per process (in ``serving.app.lifespan``, so each ``--workers`` worker has its own, after the fork)
and never touches OpenTelemetry's global provider.

What it records with ``tracing: true``:

- one SERVER span per admitted ``encore.v1.RankingService`` call (``/encore.v1.RankingService/Rank``,
  ``…/RecordEvents``), from opentelemetry-instrumentation-grpc's asyncio server interceptor: rpc.*
  attributes, the gRPC status code, the caller's trace context from the metadata. It sits after
  ``AdmissionInterceptor`` (refused calls stay as cheap as before and are counted in
  ``encore_shed_requests_total``, not traced) and before ``RequestIdInterceptor``, so the span is
  current while the handler runs and logs; health checks and reflection are not traced;
- on ``Rank``, the pipeline's spans (``ranking.tracing``): request-level attributes on the server
  span and one child span per stage.

The standard ``OTEL_*`` variables the SDK reads still apply: ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES`` (the service is ``encore`` unless they name one), the exporter's
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` (used when ``otlp_endpoint`` is null; else
``http://localhost:4317``), ``…_HEADERS``, ``…_CERTIFICATE``, ``…_TIMEOUT``, ``…_COMPRESSION``,
and the batch processor's ``OTEL_BSP_*`` (queue size, batch size, delay). ``OTEL_TRACES_SAMPLER``
is not: ``trace_sample_ratio`` decides. Spans leave the process in batches on the SDK's own thread,
never on the event loop; a queue that is full (collector down) drops spans, never blocks a request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from ranking.tracing import NO_TRACER
from serving.config import Settings

log = logging.getLogger(__name__)

#: ``service.name`` unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` give one.
DEFAULT_SERVICE_NAME = "encore"
#: At shutdown, spans still queued get this long to reach the collector; then they are dropped.
SHUTDOWN_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Tracing:
    """The process's tracing: ``tracer`` for the pipeline executors, ``provider`` None when off."""

    tracer: trace.Tracer = NO_TRACER
    provider: TracerProvider | None = None
    exporter: SpanExporter | None = None

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def server_interceptor(self, service: str) -> grpc.aio.ServerInterceptor | None:  # type: ignore[type-arg]
        """The gRPC server span interceptor for ``service``'s methods (None when tracing is off)."""
        if self.provider is None:
            return None
        make: Any = aio_server_interceptor  # untyped in opentelemetry-instrumentation-grpc
        interceptor: grpc.aio.ServerInterceptor = make(  # type: ignore[type-arg]
            tracer_provider=self.provider, filter_=filters.service_name(service)
        )
        return interceptor

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Flush queued spans and stop the exporter, waiting at most ``timeout_s`` (blocking: call it
        off the event loop). An unreachable collector costs the timeout, never a hang."""
        provider = self.provider
        if provider is None:
            return
        worker = threading.Thread(target=provider.shutdown, name="encore-tracing-shutdown", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            log.warning("tracing: queued spans not exported within %g s at shutdown; dropped", timeout_s)
            if self.exporter is not None:
                self.exporter.shutdown()  # ends the exporter's retries (its backoff waits on this), so the rest ends
            worker.join(1.0)


DISABLED = Tracing()


def build_tracing(settings: Settings, exporter: SpanExporter | None = None) -> Tracing:
    """The process's ``Tracing`` from ``settings`` (``DISABLED`` when ``tracing`` is false).

    ``exporter``: where spans go instead of the OTLP collector, exported synchronously as each span
    ends (tests: ``InMemorySpanExporter``); by default an ``OTLPSpanExporter`` to ``otlp_endpoint``
    behind a ``BatchSpanProcessor``.
    """
    if not settings.tracing:
        log.info("tracing off")
        return DISABLED
    processor: SpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
        where = type(exporter).__name__
    else:
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
        processor = BatchSpanProcessor(exporter)
        where = settings.otlp_endpoint or "the OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT collector (or localhost:4317)"
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
        resource=resource,
        shutdown_on_exit=False,  # lifespan shuts it down, bounded by SHUTDOWN_TIMEOUT_S
    )
    provider.add_span_processor(processor)
    log.info(
        "tracing on: spans of service %s to %s, sample ratio %g",
        resource.attributes.get(SERVICE_NAME),
        where,
        settings.trace_sample_ratio,
    )
    return Tracing(tracer=provider.get_tracer("encore.ranking"), provider=provider, exporter=exporter)
