"""Multi-process serving: ``encore serve --workers N``.

The parent loads and validates the bundle once — before any gRPC object exists — then forks N
workers. Each worker builds its own gRPC server, ONNX sessions, Redis pool and event loop and
binds the same port with SO_REUSEPORT, so the kernel spreads connections over the workers. The
FAISS index and item arrays are the parent's (memory-mapped arrays and copy-on-write pages),
shared rather than copied. Metrics: every worker writes to ``PROMETHEUS_MULTIPROC_DIR``; the
parent serves the aggregate on one endpoint. A worker that dies is restarted (at most
``MAX_RESTARTS`` within ``RESTART_WINDOW_S``, then the parent gives up and exits non-zero).
SIGTERM/SIGINT to the parent drains every worker (health NOT_SERVING first) and exits; SIGHUP
is forwarded to every worker (each re-reads its bundle path and experiments file).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, MutableSequence
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path

from serving.config import Settings
from serving.errors import ConfigError
from serving.listen import check_can_listen, start_metrics_http

log = logging.getLogger(__name__)

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_metrics() -> Path:
    """Point prometheus_client at a fresh directory; must run before it is first imported."""
    import sys

    if "prometheus_client" in sys.modules and MULTIPROC_ENV not in os.environ:
        raise RuntimeError("prometheus_client was imported before multiprocess metrics were configured")
    path = Path(os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="encore-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _worker_main(index: int, settings: Settings, bundle: object, ready: MutableSequence[int]) -> None:
    from models.bundle import Bundle
    from serving.request_context import configure_logging
    from serving.server import Readiness, serve

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    configure_logging(logging.getLogger().level, settings.log_format)
    assert isinstance(bundle, Bundle)

    def publish(serving: bool) -> None:
        ready[index] = int(serving)

    asyncio.run(serve(settings, bundle=bundle, worker=index, readiness=Readiness(publish)))


def serve_workers(settings: Settings, workers: int) -> int:
    """Run ``workers`` worker processes on one port until SIGTERM/SIGINT; returns an exit code."""
    if settings.redis_url is None:
        raise ConfigError(
            "--workers: needs --redis-url; the embedded feature store lives in one process, so plays "
            "recorded by one worker would be invisible to the others"
        )
    if settings.admin_port is not None:
        raise ConfigError(
            "--workers: the admin listener serves one process; with workers send SIGHUP to the parent "
            "(it reloads every worker) and read status from the metrics endpoint"
        )
    if MULTIPROC_ENV not in os.environ:
        raise ConfigError("--workers: call prepare_multiprocess_metrics() before importing the server")
    asyncio.run(_check_redis_url(settings.redis_url))  # a malformed URL fails here, not in every worker
    port = settings.port or _free_port(settings.host)
    check_can_listen(settings.host, port, setting="port", reuse_port=True)  # here, not in every worker
    if settings.metrics_port:
        check_can_listen(settings.host, settings.metrics_port, setting="metrics_port")
    import faiss

    from models.bundle import load_bundle

    faiss.omp_set_num_threads(1)
    bundle = load_bundle(settings.bundle)
    if settings.load_features:
        asyncio.run(_load_features_once(settings, bundle))
    worker_settings = replace(settings, port=port, load_features=False)
    context = multiprocessing.get_context("fork")
    #: Each worker's gRPC health, 1 while SERVING (shared memory: the parent's /readyz reads it).
    ready: MutableSequence[int] = context.Array("b", workers, lock=False)

    def start(index: int) -> BaseProcess:
        ready[index] = 0
        process = context.Process(
            target=_worker_main,
            args=(index, worker_settings, bundle, ready),
            name=f"encore-worker-{index}",
            daemon=False,
        )
        process.start()
        log.info("worker %d started (pid %s) on %s:%d", index, process.pid, settings.host, port)
        return process

    processes = {i: start(i) for i in range(workers)}
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def reload_all(signum: int, _frame: object) -> None:
        for process in processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload_all)
    _start_metrics_endpoint(settings, lambda: not stopping and all(ready))
    restarts: list[float] = []
    exit_code = 0
    while not stopping:
        time.sleep(0.2)
        for index, process in list(processes.items()):
            if process.is_alive() or stopping:
                continue
            _mark_dead(process)
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
            if len(restarts) > MAX_RESTARTS:
                log.error("worker %d exited (%s); too many restarts, shutting down", index, process.exitcode)
                stopping, exit_code = True, 1
                break
            log.error("worker %d exited with %s; restarting", index, process.exitcode)
            processes[index] = start(index)
    log.info("stopping %d workers", len(processes))
    for process in processes.values():
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in processes.values():
        process.join(timeout=15)
        if process.is_alive():
            process.kill()
            process.join()
        _mark_dead(process)
    return exit_code


async def _check_redis_url(url: str) -> None:
    from features.redis_store import RedisFeatureStore

    await RedisFeatureStore.from_url(url, 1).close()  # parses the URL; connects to nothing


async def _load_features_once(settings: Settings, bundle: object) -> None:
    from features.redis_store import RedisFeatureStore
    from models.bundle import Bundle
    from serving.app import load_features

    assert isinstance(bundle, Bundle) and settings.redis_url is not None
    store = RedisFeatureStore.from_url(settings.redis_url, bundle.dim, version=bundle.version)  # a versioned load
    try:
        await load_features(store, bundle)
    finally:
        await store.close()


def _start_metrics_endpoint(settings: Settings, ready: Callable[[], bool]) -> None:
    """The aggregated metrics of every worker; ``/readyz`` is 200 while every worker is SERVING."""
    if settings.metrics_port is None:
        return
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    port = start_metrics_http(settings.metrics_port, settings.host, registry, ready)
    log.info("metrics (all workers) on http://%s:%d/metrics", settings.host, port)


def _mark_dead(process: BaseProcess) -> None:
    from prometheus_client import multiprocess

    if process.pid is not None:
        multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
