"""Integration fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadtests.harness import RedisClusterProcess


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    """A real 3-node Redis Cluster per test module (a module may kill and restart nodes)."""
    cluster = RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
