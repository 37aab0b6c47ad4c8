"""Integration fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from common.spark import spark_session
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


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A Spark ``local[2]`` session for one test module (the engine CI runs), stopped after it."""
    session = spark_session("local[2]", app_name="encore-tests", conf={"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
