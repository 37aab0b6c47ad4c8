"""Running the reference: one process, or ``--workers N`` forked processes sharing one port.

The bundle is loaded once before any gRPC object exists; workers are forked after it (as
``encore serve --workers`` does), each with its own event loop, gRPC server, ONNX session (one
intra-op thread) and Redis pool, binding the port with ``grpc.so_reuseport``. Health says
SERVING once a warm-up request has run; SIGTERM/SIGINT turn it NOT_SERVING and stop (the parent
forwards them to its workers). The bound address is logged: ``reference serving ... on HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import faiss
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import loadtests.reference
from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from features.redis_store import RedisFeatureStore
from loadtests.reference.handler import StraightLineServicer
from models.bundle import Bundle, load_bundle
from models.runtime import load_sessions
from ranking.assembly import assemble
from ranking.observer import NullObserver
from ranking.sources.ann import AnnSource
from ranking.surfaces import home
from serving.config import Settings, load_settings

log = logging.getLogger("loadtests.reference")

#: grpc_health's asyncio servicer (its type stubs do not describe ``health.aio``).
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]
SERVICES = ("", pb.DESCRIPTOR.services_by_name["RankingService"].full_name)


async def serve(bundle: Bundle, settings: Settings, redis_url: str, port: int, *, reuse_port: bool) -> None:
    """Serve until SIGTERM/SIGINT on ``settings.host:port`` (0: a free port, logged)."""
    store = RedisFeatureStore.from_url(redis_url, bundle.dim, version=bundle.version)
    await store.follow(bundle.version)  # the bundle's versioned load, as Encore reads it
    sessions = load_sessions(bundle, 1)
    # Encore's components; the executor is never used: nothing here leaves the event loop
    built = assemble(bundle, sessions, store, ThreadPoolExecutor(max_workers=1), NullObserver())
    components = replace(built.components, ann=AnnSource(bundle.index, None))  # FAISS inline for any index
    servicer = StraightLineServicer(bundle, settings, store, home.declare(components), sessions[bundle.default_model])
    users = bundle.load_users().user_ids
    await servicer.rank(pb.RankRequest(user_id=users[0] if users else "warm-up", surface=pb.SURFACE_HOME))
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1 if reuse_port else 0)])
    pb_grpc.add_RankingServiceServicer_to_server(servicer, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{settings.host}:{port}")
    await server.start()
    for service in SERVICES:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("reference serving bundle %s on %s:%d (pid %d)", bundle.version, settings.host, bound, os.getpid())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    for service in SERVICES:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(2.0)
    await store.close()


def _worker(bundle: Bundle, settings: Settings, redis_url: str, port: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    asyncio.run(serve(bundle, settings, redis_url, port, reuse_port=True))


def serve_workers(bundle: Bundle, settings: Settings, redis_url: str, port: int, workers: int) -> int:
    """Fork ``workers`` processes on one port; return when all have exited (0 if all exited cleanly).

    SIGTERM/SIGINT are forwarded to every worker; a worker that fails stops the others.
    """
    if port == 0:
        with socket.socket() as s:
            s.bind((settings.host, 0))
            port = int(s.getsockname()[1])
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_worker, args=(bundle, settings, redis_url, port)) for _ in range(workers)]
    for process in processes:
        process.start()

    def stop_all(*_: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    running = {p.sentinel: p for p in processes}
    while running:
        ready = set(wait(list(running)))
        for sentinel in [s for s in running if s in ready]:
            process = running.pop(sentinel)
            process.join()
            if process.exitcode != 0:
                log.error("worker pid %s exited with %s; stopping the others", process.pid, process.exitcode)
                stop_all()
    return 0 if all(p.exitcode == 0 for p in processes) else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.reference",
        description=loadtests.reference.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--redis-url", required=True, help="the feature store (load it with encore serve --load-features)")
    p.add_argument("--config", type=Path, help="Encore's settings file (surfaces.home sizes and limits)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (logged)")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.workers < 1:
        raise SystemExit("reference: --workers must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    faiss.omp_set_num_threads(1)
    settings = replace(load_settings(args.bundle, args.config), host=args.host)
    bundle = load_bundle(args.bundle)
    if args.workers == 1:
        asyncio.run(serve(bundle, settings, args.redis_url, args.port, reuse_port=False))
        return 0
    return serve_workers(bundle, settings, args.redis_url, args.port, args.workers)
