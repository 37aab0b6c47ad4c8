"""``encore experiments serve``: the experimentation API as its own process.

Why its own process rather than the ranking servers' admin listener: it is the control plane of a
fleet (one instance serves every pod; the pods only follow the store), it reads exposure and
outcome logs and runs the offline analysis, which the ranking server never imports, and its
availability must not depend on a ranking pod's load. It needs the store's URL, the bundle the
servers run (for its model versions), a token of at least 16 characters (``--token-file`` or
``ENCORE_EXPERIMENTS_TOKEN``) and optionally TLS; it exposes gRPC health and Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from encore.v1 import experiments_pb2_grpc as xpb_grpc
from experimentation.api import ExperimentApi
from experimentation.control import ExperimentControl, Sources
from experimentation.planner import TrafficEstimate
from models.bundle import read_manifest
from serving.errors import ConfigError
from serving.experiments.store import open_store
from serving.listen import add_port, start_metrics_http
from serving.tokens import read_token

log = logging.getLogger(__name__)
TOKEN_ENV = "ENCORE_EXPERIMENTS_TOKEN"


@dataclass(frozen=True)
class ServiceConfig:
    store: str
    bundle: Path
    host: str = "127.0.0.1"
    port: int = 0
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    exposures: tuple[Path, ...] = ()
    outcomes: tuple[Path, ...] = ()
    users_per_day: float | None = None
    metrics_port: int | None = None


def service_token(config: ServiceConfig) -> str:
    """The API token; ``ConfigError`` naming the setting when there is none of 16+ characters."""
    return read_token(
        config.token_file,
        TOKEN_ENV,
        setting="experiments serve",
        file_setting="--token-file",
        what="the experiments API",
    )


def _credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key: give both or neither")
    if config.tls_cert is None or config.tls_key is None:
        return None
    try:
        return grpc.ssl_server_credentials([(config.tls_key.read_bytes(), config.tls_cert.read_bytes())])
    except OSError as exc:
        raise ConfigError(f"--tls-cert/--tls-key: cannot read: {exc}") from exc


async def serve_experiments(config: ServiceConfig, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or until cancelled); ``ready`` is set once the port is bound."""
    token = service_token(config)
    models = [m["version"] for m in read_manifest(config.bundle)["models"]]
    try:
        store = open_store(config.store)
    except ValueError as exc:
        raise ConfigError(f"--store: {exc}") from exc
    traffic = (
        TrafficEstimate(config.users_per_day, "stated (--users-per-day)")
        if config.users_per_day
        else TrafficEstimate(0.0, "no traffic observed and none stated (--users-per-day)")
    )
    sources = Sources(config.exposures, config.outcomes, traffic_default=traffic)
    control = ExperimentControl(store, lambda: models, sources)
    registry = CollectorRegistry()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 1 << 20)])
    xpb_grpc.add_ExperimentServiceServicer_to_server(ExperimentApi(control, token, registry), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = add_port(server, config.host, config.port, setting="port", credentials=_credentials(config))
    if config.metrics_port is not None:
        start_metrics_http(config.metrics_port, config.host, registry)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info("experiments API on %s:%d (store %s, bundle models %s)", config.host, port, store.url, models)
    print(f"experiments API listening on {config.host}:{port}", flush=True)
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(2.0)
        await store.close()
