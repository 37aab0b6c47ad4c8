"""gRPC server construction (``create_server``) separate from running it (``serve``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from encore.v1 import ranking_pb2 as pb
from models.bundle import Bundle
from serving.admin import admin_token, create_admin_server
from serving.app import EncoreApp, lifespan
from serving.config import Settings
from serving.errors import ConfigError
from serving.interceptors import AdmissionInterceptor, RequestIdInterceptor
from serving.listen import add_port, start_metrics_http
from serving.request_context import bind_surface
from serving.requests import SURFACES
from serving.servicer import RankingServicer

log = logging.getLogger(__name__)

#: grpc_health's asyncio servicer (its type stubs do not describe ``health.aio``).
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]

M = TypeVar("M", bound=Message)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RankingService"].full_name
RANKING_METHODS = tuple(f"/{SERVICE_NAME}/{m.name}" for m in pb.DESCRIPTOR.services_by_name["RankingService"].methods)
MAX_MESSAGE_BYTES = 1 << 20


async def create_server(
    app: EncoreApp, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """A started-later server bound to ``host:port`` (0 picks a free port); returns it and the port.

    Every unary RPC runs with its request id bound (``serving.interceptors.RequestIdInterceptor``);
    the ranking service's calls pass admission first (``serving.admission``): gRPC core holds at most
    ``max_pending`` of them before Python picks them up, and ``AdmissionInterceptor`` refuses early.
    The ranking service is registered by method, so its backlog is its own: health checks and
    reflection never wait behind ranking calls or count against ``max_pending``.

    With ``tracing`` on, the admitted ranking calls get a server span (``serving.tracing``), between
    admission and the request id, so refusals stay cheap and the span is current in the handler.

    The health service reports NOT_SERVING until ``serving_started`` flips it.
    """
    limits = app.settings.admission
    traced = app.tracing.server_interceptor(SERVICE_NAME)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # gRPC core refuses calls past this backlog itself, before any Python runs (per method)
            ("grpc.server.max_pending_requests", limits.max_pending),
            ("grpc.server.max_pending_requests_hard_limit", limits.max_pending),
        ],
        interceptors=[
            AdmissionInterceptor(app.admission, app.metrics, RANKING_METHODS),
            *([traced] if traced is not None else []),
            RequestIdInterceptor(),
        ],
    )
    add_ranking_service(RankingServicer(app), server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    credentials = server_credentials(app.settings)
    bound = add_port(server, host, port, setting="port", credentials=credentials, reuse_port=reuse_port)
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    return server, bound, health_servicer


def _lenient(message: type[M]) -> Callable[[bytes], M | None]:
    """A request deserializer that answers None for undecodable bytes (the servicer then returns
    INVALID_ARGUMENT) instead of raising, which gRPC would turn into UNKNOWN plus a traceback."""

    def parse(data: bytes) -> M | None:
        try:
            return message.FromString(data)
        except DecodeError:
            return None

    return parse


def add_ranking_service(servicer: RankingServicer, server: grpc.aio.Server) -> None:
    """Like the generated ``add_RankingServiceServicer_to_server`` (registered methods: each has its own
    backlog in gRPC core), with lenient deserializers."""
    handlers = {
        "Rank": grpc.unary_unary_rpc_method_handler(
            _with_surface(servicer.Rank),
            request_deserializer=_lenient(pb.RankRequest),
            response_serializer=pb.RankResponse.SerializeToString,
        ),
        "RecordEvents": grpc.unary_unary_rpc_method_handler(
            servicer.RecordEvents,
            request_deserializer=_lenient(pb.RecordEventsRequest),
            response_serializer=pb.RecordEventsResponse.SerializeToString,
        ),
    }
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]  # not in the stubs


def _with_surface(
    rank: Callable[[pb.RankRequest | None, Any], Awaitable[pb.RankResponse]],
) -> Callable[[pb.RankRequest | None, Any], Awaitable[pb.RankResponse]]:
    """``rank`` with the request's surface bound for its log records (``serving.request_context``)."""

    async def handler(request: pb.RankRequest | None, context: Any) -> pb.RankResponse:
        surface = SURFACES.get(request.surface) if request is not None else None
        with bind_surface(surface.value if surface is not None else None):
            return await rank(request, context)

    return handler


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from settings (``tls_cert``/``tls_key``); mutual TLS when ``tls_client_ca`` is set."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        key, cert = settings.tls_key.read_bytes(), settings.tls_cert.read_bytes()
        client_ca = None if settings.tls_client_ca is None else settings.tls_client_ca.read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls: cannot read a certificate or key: {exc}") from exc
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class Readiness:
    """Whether the gRPC health service says SERVING, for the HTTP ``/readyz`` (read from its threads).

    ``mark_serving`` keeps it in step: it turns ready after the health service says SERVING and
    unready before it says NOT_SERVING, so ``/readyz`` is never 200 while gRPC health is not.
    ``publish`` also receives every change (a ``--workers`` worker reports to its parent)."""

    def __init__(self, publish: Callable[[bool], None] | None = None) -> None:
        self._serving = False
        self._publish = publish

    def set(self, serving: bool) -> None:
        self._serving = serving
        if self._publish is not None:
            self._publish(serving)

    def __call__(self) -> bool:
        return self._serving


async def mark_serving(health_servicer: HealthServicer, serving: bool, readiness: Readiness | None = None) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    if readiness is not None and not serving:
        readiness.set(False)
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, status)
    if readiness is not None and serving:
        readiness.set(True)


def log_unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's handler for exceptions nobody retrieved (e.g. a background task's): one
    warning line naming the task and the error, never a traceback on stderr."""
    exc = context.get("exception")
    task = context.get("task") or context.get("future")
    where = task.get_name() if isinstance(task, asyncio.Task) else type(task).__name__ if task else "event loop"
    what = f"{type(exc).__name__}: {exc}" if exc is not None else context.get("message", "?")
    log.warning("unhandled error in %s: %s", where, what)


def _reload_all(app: EncoreApp) -> None:
    """SIGHUP: re-read the experiments file and the bundle path now."""
    for reloader in (app.reloader, app.bundle_reloader):
        if reloader is not None:
            reloader.trigger()


async def serve(
    settings: Settings,
    grace_s: float = 5.0,
    *,
    bundle: Bundle | None = None,
    worker: int | None = None,
    readiness: Readiness | None = None,
) -> None:
    """Run until SIGINT/SIGTERM: health goes NOT_SERVING first, then in-flight RPCs drain.

    ``worker`` is set in a worker process of ``serve_workers``: the port is shared (SO_REUSEPORT),
    the bundle is the parent's, and the parent exposes the aggregated metrics (and ``/readyz`` from
    each worker's ``readiness``). The metrics port also answers ``/healthz`` and ``/readyz``
    (``serving.listen.serve_http``): ready exactly while the gRPC health service says SERVING.
    """
    readiness = readiness if readiness is not None else Readiness()
    token = admin_token(settings) if settings.admin_port is not None else None  # fail before serving
    async with lifespan(settings, bundle) as app:
        if settings.metrics_port is not None and worker is None:
            metrics_port = start_metrics_http(settings.metrics_port, settings.host, app.metrics.registry, readiness)
            log.info("metrics on http://%s:%d/metrics (and /healthz, /readyz)", settings.host, metrics_port)
        server, port, health_servicer = await create_server(
            app, settings.host, settings.port, reuse_port=worker is not None
        )
        await server.start()
        admin = None
        if token is not None:
            admin, admin_port = await create_admin_server(app, token)
            await admin.start()
            log.info("admin listener on %s:%d (token required)", settings.admin_host, admin_port)
        await mark_serving(health_servicer, True, readiness)
        who = "" if worker is None else f" (worker {worker}, pid {os.getpid()})"
        log.info("encore serving bundle %s on %s:%d%s", app.bundle.version, settings.host, port, who)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(log_unhandled)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload_all(app))
        await stop.wait()
        log.info("shutting down%s: NOT_SERVING, draining for up to %.0f s", who, grace_s)
        await mark_serving(health_servicer, False, readiness)
        await server.stop(grace_s)
        if admin is not None:
            await admin.stop(1.0)
