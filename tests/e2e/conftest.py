"""A real `encore serve` process (``loadtests.harness.start_server``) on a real Redis, shared per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, start_server, stop_server

EXPERIMENTS = """
experiments:
  - key: home-model
    surface: home
    coverage: 1.0
    status: running
    variants:
      - {key: control, weight: 0.5, params: {}}
      - {key: v2, weight: 0.5, params: {model_version: linear-v2}}
"""


@pytest.fixture(scope="module")
def redis_for_server() -> Iterator[RedisProcess]:
    redis = RedisProcess()
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture(scope="module")
def server(
    tiny_bundle_path: Path, redis_for_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Serves the tiny bundle on Redis (features loaded at start-up) with one experiment."""
    tmp = tmp_path_factory.mktemp("server")
    experiments = tmp / "experiments.yaml"
    experiments.write_text(EXPERIMENTS)
    proc = start_server(
        tiny_bundle_path, tmp, "--redis-url", redis_for_server.url, "--load-features", "--experiments", str(experiments)
    )
    yield proc
    stop_server(proc)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.RankingServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.RankingServiceStub(channel)
