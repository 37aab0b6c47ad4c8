"""RedisFeatureStore against a real redis-server: round trips, layout, codec, failures."""

from __future__ import annotations

import numpy as np
import pytest
from redis.asyncio import Redis

from features.keys import plays_key, user_key
from features.memory_store import MemoryFeatureStore
from features.redis_store import RedisFeatureStore
from features.schema import RECENT_PLAYS_MAX
from features.store import FeatureStore, FeatureStoreError
from loadtests.harness import RedisClusterProcess, RedisProcess
from tests.support import user_snapshot

DIM = 8


@pytest.fixture(params=["redis", "memory", "cluster"])
async def store(request: pytest.FixtureRequest, redis_server: RedisProcess) -> FeatureStore:
    """Every store runs the same contract tests: one Redis node, in-memory, a Redis Cluster."""
    if request.param == "memory":
        return MemoryFeatureStore()
    if request.param == "cluster":
        cluster: RedisClusterProcess = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        return RedisFeatureStore.from_url(cluster.url, DIM)
    return RedisFeatureStore.from_url(redis_server.url, DIM)


async def test_snapshot_round_trips_vectors_and_stats_exactly(store: FeatureStore) -> None:
    snap = user_snapshot(30, DIM)
    progress: list[tuple[int, int]] = []
    assert await store.load_snapshot(snap, progress=lambda d, t: progress.append((d, t))) == 30
    assert progress[-1] == (30, 30)
    record = await store.get_user("user-7", 1.0)
    assert record.vector is not None and record.stats is not None
    np.testing.assert_array_equal(record.vector, snap.vectors[7])
    np.testing.assert_array_equal(record.stats, snap.stats[7])
    await store.close()


async def test_snapshot_round_trips_known_items_exactly(store: FeatureStore) -> None:
    snap = user_snapshot(30, DIM)
    await store.load_snapshot(snap)
    for row in (0, 5, 6, 13):  # 0 knows nothing, 6 and 13 know 6 items
        record = await store.get_user(f"user-{row}", 1.0)
        assert record.known_items.dtype == np.int32
        np.testing.assert_array_equal(record.known_items, snap.known(row))
    assert (await store.get_user("nobody", 1.0)).known_items.size == 0
    await store.close()


async def test_unknown_user_has_no_vector_and_no_history(store: FeatureStore) -> None:
    record = await store.get_user("nobody", 1.0)
    assert record.vector is None and record.stats is None
    assert record.recent_plays == () and record.recent_skips == ()
    await store.close()


async def test_recent_plays_are_most_recent_first_and_trimmed(store: FeatureStore) -> None:
    await store.record_events("u", [f"i{i}" for i in range(40)], [], 1.0)
    await store.record_events("u", [f"j{i}" for i in range(20)], ["s1", "s2"], 1.0)
    record = await store.get_user("u", 1.0)
    assert len(record.recent_plays) == RECENT_PLAYS_MAX
    assert record.recent_plays[:3] == ("j19", "j18", "j17")
    assert record.recent_plays[-1] == "i10"
    assert record.recent_skips == ("s2", "s1")
    await store.close()


async def test_vectors_are_stored_as_packed_float32_under_the_documented_keys(redis_server: RedisProcess) -> None:
    store = RedisFeatureStore.from_url(redis_server.url, DIM)
    snap = user_snapshot(3, DIM)
    await store.load_snapshot(snap)
    await store.record_events("user-1", ["a"], [], 1.0)
    raw = Redis.from_url(redis_server.url)
    fields = await raw.hgetall(user_key("user-1"))
    assert fields[b"vec"] == snap.vectors[1].astype("<f4").tobytes()
    assert fields[b"known"] == snap.known(1).astype("<i4").tobytes() and len(fields[b"known"]) == 4
    assert (await raw.hgetall(user_key("user-0")))[b"known"] == b""  # knows nothing
    assert await raw.lrange(plays_key("user-1"), 0, -1) == [b"a"]
    await raw.aclose()
    await store.close()


async def test_a_vector_of_the_wrong_length_is_an_error_not_garbage(redis_server: RedisProcess) -> None:
    raw = Redis.from_url(redis_server.url)
    await raw.hset(user_key("bad"), mapping={"vec": b"\x00" * 12, "stats": b"\x00" * 8})
    await raw.aclose()
    store = RedisFeatureStore.from_url(redis_server.url, DIM)
    with pytest.raises(FeatureStoreError, match="expected 32"):
        await store.get_user("bad", 1.0)
    await store.close()


async def test_a_user_hash_without_known_items_is_an_error(redis_server: RedisProcess) -> None:
    raw = Redis.from_url(redis_server.url)
    await raw.hset(user_key("old"), mapping={"vec": b"\x00" * 4 * DIM, "stats": b"\x00" * 8})
    await raw.hset(user_key("odd"), mapping={"vec": b"\x00" * 4 * DIM, "stats": b"\x00" * 8, "known": b"\x01" * 6})
    await raw.aclose()
    store = RedisFeatureStore.from_url(redis_server.url, DIM)
    with pytest.raises(FeatureStoreError, match="missing field b'known'"):
        await store.get_user("old", 1.0)
    with pytest.raises(FeatureStoreError, match="known: 6 bytes"):
        await store.get_user("odd", 1.0)
    await store.close()


async def test_redis_down_raises_feature_store_error_quickly(redis_server: RedisProcess) -> None:
    store = RedisFeatureStore.from_url(redis_server.url, DIM)
    assert await store.ping(1.0)
    redis_server.stop()
    with pytest.raises(FeatureStoreError):
        await store.get_user("user-1", 0.5)
    assert not await store.ping(0.5)
    redis_server.start()
    assert await store.ping(1.0)  # recovers without a restart
    await store.close()
