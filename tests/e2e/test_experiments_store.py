"""A fleet follows the experiments store: `encore serve --workers 2` on real Redis applies each new
revision in every worker without a restart, and keeps serving the last one when Redis is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, scrape_metric, start_server, stop_server
from serving.experiments.store import open_store

DEADLINE_S = 60.0  # generous: CI shares two cores; the propagation delay is printed, not asserted


def everyone(key: str, cap: int) -> dict[str, Any]:
    return {
        "experiments": [
            {
                "key": key,
                "surface": "home",
                "coverage": 1.0,
                "status": "running",
                "variants": [
                    {"key": "control", "weight": 0.5, "params": {"diversity_cap": 2}},
                    {"key": "treatment", "weight": 0.5, "params": {"diversity_cap": cap}},
                ],
            }
        ]
    }


def wait_for(condition: Any, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        if condition():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not within {DEADLINE_S:g} s: {what}")


def experiments_seen(server: ServerProcess, users: int = 24) -> set[str]:
    """The experiment keys in Home answers over fresh connections (spread over the workers)."""
    keys: set[str] = set()
    for u in range(users):
        with grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            response = pb_grpc.RankingServiceStub(channel).Rank(
                pb.RankRequest(user_id=f"u{u}", surface=pb.SURFACE_HOME, limit=5), timeout=10
            )
        keys.update(a.experiment for a in response.assignments)
    return keys


@pytest.fixture
def fleet(tiny_bundle_path: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, RedisProcess]]:
    redis = RedisProcess()
    redis.start()
    server = start_server(
        tiny_bundle_path,
        tmp_path,
        "--workers",
        "2",
        "--redis-url",
        redis.url,
        "--load-features",
        "--experiments-store",
        redis.url,
        new_session=True,
    )
    try:
        yield server, redis
    finally:
        stop_server(server)
        redis.stop()


def commit(url: str, base: int, document: dict[str, Any], reason: str) -> None:
    async def run() -> None:
        store = open_store(url)
        try:
            await store.commit(base, document, "e2e", reason)
        finally:
            await store.close()

    asyncio.run(run())


def test_every_worker_serves_each_new_revision_and_keeps_the_last_when_the_store_is_gone(
    fleet: tuple[ServerProcess, RedisProcess],
) -> None:
    server, redis = fleet
    assert scrape_metric(server, "encore_experiments_revision") == 0 and experiments_seen(server) == set()
    delays = []
    for n in range(1, 4):
        commit(redis.url, n - 1, everyone(f"cap-{n}", 2 + n), f"revision {n}")
        # the minimum over live workers: every worker serves revision n
        delays.append(wait_for(lambda n=n: scrape_metric(server, "encore_experiments_revision") == n, f"revision {n}"))
        assert experiments_seen(server) == {f"cap-{n}"}
    print(f"commit → served by both workers: {', '.join(f'{d:.2f} s' for d in delays)}")
    redis.stop()
    wait_for(lambda: scrape_metric(server, "encore_experiments_store_up") == 0, "store reported down")
    assert experiments_seen(server) == {"cap-3"}  # the last good revision, answers still served
    assert server.process.poll() is None
