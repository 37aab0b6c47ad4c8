"""gRPC server construction (``create_server``) separate from running it (``serve``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from models.bundle import Bundle
from serving.app import EncoreApp, lifespan
from serving.config import Settings
from serving.servicer import RankingServicer

log = logging.getLogger(__name__)

#: grpc_health's asyncio servicer (its type stubs do not describe ``health.aio``).
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RankingService"].full_name
MAX_MESSAGE_BYTES = 1 << 20


async def create_server(
    app: EncoreApp, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """A started-later server bound to ``host:port`` (0 picks a free port); returns it and the port.

    The health service reports NOT_SERVING until ``serving_started`` flips it.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
    )
    pb_grpc.add_RankingServiceServicer_to_server(RankingServicer(app), server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    return server, bound, health_servicer


async def mark_serving(health_servicer: HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, status)


def _reload_all(app: EncoreApp) -> None:
    """SIGHUP: re-read the experiments file and the bundle path now."""
    for reloader in (app.reloader, app.bundle_reloader):
        if reloader is not None:
            reloader.trigger()


async def serve(
    settings: Settings, grace_s: float = 5.0, *, bundle: Bundle | None = None, worker: int | None = None
) -> None:
    """Run until SIGINT/SIGTERM: health goes NOT_SERVING first, then in-flight RPCs drain.

    ``worker`` is set in a worker process of ``serve_workers``: the port is shared (SO_REUSEPORT),
    the bundle is the parent's, and the parent exposes the aggregated metrics.
    """
    async with lifespan(settings, bundle) as app:
        if settings.metrics_port is not None and worker is None:
            httpd, _ = start_http_server(settings.metrics_port, addr=settings.host, registry=app.metrics.registry)
            log.info("metrics on http://%s:%d/metrics", settings.host, httpd.server_port)
        server, port, health_servicer = await create_server(
            app, settings.host, settings.port, reuse_port=worker is not None
        )
        await server.start()
        await mark_serving(health_servicer, True)
        who = "" if worker is None else f" (worker {worker}, pid {os.getpid()})"
        log.info("encore serving bundle %s on %s:%d%s", app.bundle.version, settings.host, port, who)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload_all(app))
        await stop.wait()
        log.info("shutting down%s: NOT_SERVING, draining for up to %.0f s", who, grace_s)
        await mark_serving(health_servicer, False)
        await server.stop(grace_s)
