"""Versioned Redis loads: Spark and in-process loaders, the complete-marker, the switch rule, gc."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from features.keys import ACTIVE_KEY, marker_key, plays_key, user_key, version_pattern
from features.redis_load import LoadError, gc, load_local, load_spark, loaded_versions
from features.redis_store import RedisFeatureStore
from features.snapshot import UserSnapshot
from loadtests.harness import RedisClusterProcess, RedisProcess
from models.bundle import load_bundle
from tests.support import user_snapshot


def _url(server: RedisProcess) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


def _shifted(snapshot: UserSnapshot, by: float) -> UserSnapshot:
    return dataclasses.replace(snapshot, vectors=(snapshot.vectors + by).astype(np.float32))


async def _vectors(store: RedisFeatureStore, users: list[str]) -> list[Any]:
    return [(await store.get_user(u, 1.0)).vector for u in users]


def test_a_spark_load_makes_every_user_readable_by_the_server_store(
    spark: Any, redis_server: RedisProcess, tiny_bundle_path: Path
) -> None:
    bundle = load_bundle(tiny_bundle_path)
    snapshot = bundle.load_users()
    result = load_spark(snapshot, _url(redis_server), bundle.version, spark=spark, batch=7, partitions=3)
    assert (result.version, result.rows) == (bundle.version, len(snapshot.user_ids))
    raw = redis.Redis(port=redis_server.port)
    assert raw.hget(marker_key(bundle.version), "rows") == str(result.rows).encode()
    assert raw.get(ACTIVE_KEY) == bundle.version.encode()

    async def check() -> None:
        store = RedisFeatureStore.from_url(_url(redis_server), bundle.dim, version=bundle.version)
        await store.follow(bundle.version)
        assert store.reading_version == bundle.version
        for i, user in enumerate(snapshot.user_ids):
            record = await store.get_user(user, 1.0)
            assert record.vector is not None and np.array_equal(record.vector, snapshot.vectors[i])
            assert np.array_equal(record.known_items, snapshot.known(i))
        await store.close()

    asyncio.run(check())


def test_a_load_killed_half_way_is_never_read_and_a_rerun_switches(
    spark: Any, redis_server: RedisProcess, tiny_bundle_path: Path
) -> None:
    url = _url(redis_server)
    snapshot = load_bundle(tiny_bundle_path).load_users()
    users, dim = snapshot.user_ids, snapshot.vectors.shape[1]
    load_local(snapshot, url, "v1")
    second = _shifted(snapshot, 1.0)
    with pytest.raises(LoadError, match="a partition failed"):
        load_spark(second, url, "v2", spark=spark, batch=5, partitions=2, fail_after=10)
    raw = redis.Redis(port=redis_server.port)
    assert raw.exists(marker_key("v2")) == 0 and raw.get(ACTIVE_KEY) == b"v1"
    assert any(raw.scan_iter(match=version_pattern("v2")))  # some rows were written, unmarked

    async def scenario() -> None:
        serving = RedisFeatureStore.from_url(url, dim, version="v1", version_poll_s=0.05)
        await serving.follow("v1")
        await serving.follow("v2")  # a bundle reload to v2 while its load is incomplete
        assert serving.reading_version == "v1"
        assert all(np.array_equal(v, snapshot.vectors[i]) for i, v in enumerate(await _vectors(serving, users)))
        fresh = RedisFeatureStore.from_url(url, dim, version="v2", version_poll_s=0.05)
        await fresh.follow("v2")  # a server starting on v2: the last complete load
        assert fresh.reading_version == "v1"
        elsewhere = RedisFeatureStore.from_url(url, dim + 1, version="v9")
        await elsewhere.follow("v9")  # another dim: no fallback, cold users
        assert elsewhere.reading_version is None and (await elsewhere.get_user(users[0], 1.0)).vector is None

        await asyncio.to_thread(load_spark, second, url, "v2", spark=spark, batch=5, partitions=2)
        for _ in range(100):
            if serving.reading_version == fresh.reading_version == "v2":
                break
            await asyncio.sleep(0.05)
        assert serving.reading_version == fresh.reading_version == "v2"
        assert all(np.array_equal(v, second.vectors[i]) for i, v in enumerate(await _vectors(serving, users)))
        for store in (serving, fresh, elsewhere):
            await store.close()

    asyncio.run(scenario())


def test_the_in_process_loader_writes_the_version_and_its_marker(
    redis_server: RedisProcess, tiny_bundle_path: Path
) -> None:
    bundle = load_bundle(tiny_bundle_path)
    snapshot = bundle.load_users()

    async def run() -> None:
        store = RedisFeatureStore.from_url(_url(redis_server), bundle.dim, version=bundle.version)
        assert await store.load_snapshot(snapshot) == len(snapshot.user_ids)
        assert store.reading_version == bundle.version
        await store.close()

    asyncio.run(run())
    raw = redis.Redis(port=redis_server.port)
    assert raw.exists(user_key(snapshot.user_ids[0], bundle.version)) == 1
    assert raw.exists(user_key(snapshot.user_ids[0])) == 0  # nothing unversioned
    assert loaded_versions(_url(redis_server)).keys() == {bundle.version}


def test_gc_keeps_the_newest_loads_and_the_active_one(redis_server: RedisProcess, tiny_bundle_path: Path) -> None:
    url = _url(redis_server)
    snapshot = load_bundle(tiny_bundle_path).load_users()
    for version in ("a", "b", "c"):
        load_local(snapshot, url, version)
    assert gc(url, keep=2) == ["a"]
    raw = redis.Redis(port=redis_server.port)
    assert not any(raw.scan_iter(match=version_pattern("a"))) and raw.exists(marker_key("a")) == 0
    assert loaded_versions(url).keys() == {"b", "c"}
    assert gc(url, keep=2) == []


def test_a_cluster_load_keeps_each_user_on_its_slot_and_is_read_and_collected(
    redis_cluster: RedisClusterProcess,
) -> None:
    redis_cluster.flushall()
    snapshot = user_snapshot(60, 8, seed=3)
    url = redis_cluster.url
    for version in ("c1", "c2"):
        load_local(snapshot, url, version, batch=16)
    for user in snapshot.user_ids[:10]:  # the hash tag is the user id: every load's hash beside the plays list
        assert redis_cluster.keyslot(user_key(user, "c2")) == redis_cluster.keyslot(plays_key(user))
    assert len({redis_cluster.node_for_key(user_key(u, "c2")) for u in snapshot.user_ids}) == 3

    async def read() -> None:
        store = RedisFeatureStore.from_url(url, 8, version="c2")
        await store.follow("c2")
        assert store.reading_version == "c2"
        for i, user in enumerate(snapshot.user_ids):
            record = await store.get_user(user, 1.0)
            assert record.vector is not None and np.array_equal(record.vector, snapshot.vectors[i])
        await store.close()

    asyncio.run(read())
    assert gc(url, keep=1) == ["c1"]
    assert loaded_versions(url).keys() == {"c2"}
    for port in redis_cluster.processes:  # every node's c1 hashes are gone, its c2 hashes stay
        with redis_cluster.client(port) as node:
            assert not list(node.scan_iter(match=version_pattern("c1")))
            assert list(node.scan_iter(match=version_pattern("c2")))
