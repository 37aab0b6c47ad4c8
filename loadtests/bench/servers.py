"""The processes of a benchmark run (through ``loadtests.harness``): one throwaway Redis, ``encore
serve`` and the straight-line reference (``loadtests.reference``), each in its own process group
so its workers stop with it; and the progress line every part of the run prints."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from loadtests.harness import RedisProcess, ServerProcess, start_reference_server, start_server, stop_server


def log(line: str) -> None:
    """One progress line on stdout: ``[bench HH:MM:SS] line``."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", flush=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisProcess]:
    """A throwaway ``redis-server`` on a free loopback port without persistence."""
    redis = RedisProcess()
    try:
        redis.start()
    except RuntimeError as exc:
        raise SystemExit(f"bench: {exc}") from None
    try:
        yield redis
    finally:
        redis.stop()


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def _workers(workers: int) -> list[str]:
    return ["--workers", str(workers)] if workers > 1 else []


@contextlib.contextmanager
def encore_server(
    bundle: Path,
    redis_url: str,
    config: Path,
    workdir: Path,
    log_path: Path,
    workers: int,
    timeout_s: float = 600.0,
    checkout: Path | None = None,
) -> Iterator[ServerProcess]:
    """``encore serve`` on Redis features (loaded at start-up) as a subprocess; yields once SERVING.

    ``checkout``: run the ``cli`` package of that Encore checkout (its directory is the server's cwd,
    so ``python -m cli`` imports its code); paths are made absolute for it."""
    extra = ["--redis-url", redis_url, "--load-features", "--config", str(config.resolve()), *_workers(workers)]
    started = time.monotonic()
    # cwd=None: relative --bundles-dir / --out paths are the caller's
    server = start_server(
        bundle.resolve(),
        workdir,
        *extra,
        log_path=log_path,
        timeout_s=timeout_s,
        cwd=checkout,
        new_session=True,
    )
    try:
        log(f"encore pid {server.process.pid} SERVING on {server.target} after {time.monotonic() - started:.1f} s")
        yield server
    finally:
        stop_server(server)


@contextlib.contextmanager
def reference_server(
    bundle: Path, redis_url: str, config: Path, log_path: Path, workers: int, timeout_s: float = 600.0
) -> Iterator[ServerProcess]:
    """``python -m loadtests.reference`` on the same Redis (features already loaded); yields once SERVING."""
    extra = ["--config", str(config), *_workers(workers)]
    started = time.monotonic()
    server = start_reference_server(
        bundle, redis_url, log_path.parent, *extra, log_path=log_path, timeout_s=timeout_s, cwd=None, new_session=True
    )
    try:
        log(f"reference pid {server.process.pid} SERVING on {server.target} after {time.monotonic() - started:.1f} s")
        yield server
    finally:
        stop_server(server)
