"""RedisFeatureStore on a real 3-node Redis Cluster: placement, slots, round trips, AUTH, a dead node.

The store's contract tests also run on a cluster (``test_redis_store.py``); these cover what
only a cluster has. The node-failure test runs last and restarts the node it kills.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection

from features.keys import plays_key, skips_key, user_key
from features.redis_store import RedisFeatureStore, redacted_url
from features.schema import RECENT_PLAYS_MAX, USER_STATS
from features.snapshot import UserSnapshot
from features.store import FeatureStoreError, FeatureStoreTimeout
from loadtests.harness import RedisClusterProcess
from tests.support import user_snapshot

DIM = 8
SECRET = "s3cr3t-pa55"


@pytest.fixture
def cluster(redis_cluster: RedisClusterProcess) -> RedisClusterProcess:
    redis_cluster.flushall()
    return redis_cluster


async def test_a_snapshot_spreads_over_every_node_and_round_trips_exactly(cluster: RedisClusterProcess) -> None:
    snap = user_snapshot(60, DIM, seed=2)
    store = RedisFeatureStore.from_url(cluster.url, DIM)
    progress: list[tuple[int, int]] = []
    assert await store.load_snapshot(snap, progress=lambda d, t: progress.append((d, t)), batch=25) == 60
    assert progress == [(25, 60), (50, 60), (60, 60)]
    per_node = {}
    for port in cluster.ports:
        with cluster.client(port) as node:
            per_node[port] = node.dbsize()
    assert sum(per_node.values()) == 60 and all(n > 0 for n in per_node.values()), per_node
    for i, user_id in enumerate(snap.user_ids):
        record = await store.get_user(user_id, 1.0)
        assert record.vector is not None and record.stats is not None
        np.testing.assert_array_equal(record.vector, snap.vectors[i])
        np.testing.assert_array_equal(record.stats, snap.stats[i])
    await store.close()


@pytest.mark.parametrize("user_id", ["user-1", "ü-42", "a{b}c", "x}y", "{z}"])
async def test_a_users_keys_share_one_slot_on_one_node(cluster: RedisClusterProcess, user_id: str) -> None:
    keys = [user_key(user_id), plays_key(user_id), skips_key(user_id)]
    assert len({cluster.keyslot(k) for k in keys}) == 1
    store = RedisFeatureStore.from_url(cluster.url, DIM)
    one = UserSnapshot([user_id], np.ones((1, DIM), np.float32), np.ones((1, len(USER_STATS)), np.float32))
    await store.load_snapshot(one)
    await store.record_events(user_id, ["p1", "p2"], ["s1"], 1.0)
    record = await store.get_user(user_id, 1.0)
    assert record.vector is not None and record.recent_plays == ("p2", "p1") and record.recent_skips == ("s1",)
    with cluster.client(cluster.node_for_key(keys[0])) as node:
        assert node.cluster("countkeysinslot", cluster.keyslot(keys[0])) == 3
        assert node.exists(*keys) == 3
    await store.close()


async def test_get_user_is_one_pipeline_to_one_node(
    cluster: RedisClusterProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisFeatureStore.from_url(cluster.url, DIM)
    await store.load_snapshot(user_snapshot(30, DIM, seed=2))
    await store.record_events("user-3", ["p"], ["s"], 1.0)
    sent: list[tuple[int, int]] = []
    execute_pipeline = ClusterNode.execute_pipeline

    async def spy(node: ClusterNode, commands: list[Any]) -> bool:
        sent.append((node.port, len(commands)))
        return await execute_pipeline(node, commands)

    monkeypatch.setattr(ClusterNode, "execute_pipeline", spy)
    record = await store.get_user("user-3", 1.0)
    assert record.vector is not None and record.recent_plays == ("p",)
    assert sent == [(cluster.node_for_key(user_key("user-3")), 3)]
    await store.close()


async def test_recent_lists_are_most_recent_first_and_trimmed_on_the_users_node(cluster: RedisClusterProcess) -> None:
    store = RedisFeatureStore.from_url(cluster.url, DIM)
    await store.record_events("listener", [f"i{i}" for i in range(70)], ["s1", "s2"], 1.0)
    await store.record_events("listener", ["j1", "j2"], [], 1.0)
    record = await store.get_user("listener", 1.0)
    assert record.recent_plays[:3] == ("j2", "j1", "i69") and len(record.recent_plays) == RECENT_PLAYS_MAX
    assert record.recent_skips == ("s2", "s1")
    with cluster.client(cluster.node_for_key(plays_key("listener"))) as node:
        assert node.llen(plays_key("listener")) == RECENT_PLAYS_MAX  # trimmed in Redis, not only on read
    await store.close()


async def test_cluster_discovery_outlives_request_timeouts_shorter_than_it(cluster: RedisClusterProcess) -> None:
    """Discovery (CLUSTER SLOTS + COMMAND, ~15 ms) is not restarted by every 4 ms request timeout."""
    store = RedisFeatureStore.from_url(cluster.url, DIM)
    answered_after = None
    for attempt in range(200):
        try:
            await store.get_user("cold", 0.004)
        except FeatureStoreTimeout:
            await asyncio.sleep(0.005)
            continue
        answered_after = attempt
        break
    assert answered_after is not None, "a cold cluster client never answered within 4 ms"
    await store.close()


async def test_auth_comes_from_the_url_and_never_shows_in_errors(cluster: RedisClusterProcess) -> None:
    host_list = cluster.url.removeprefix("redis+cluster://")
    for port in cluster.ports:
        with cluster.client(port) as node:
            node.config_set("requirepass", SECRET)
    try:
        for play, url in enumerate(
            (f"redis+cluster://:{SECRET}@{host_list}", f"redis+cluster://{host_list}/?password={SECRET}")
        ):
            store = RedisFeatureStore.from_url(url, DIM)
            await store.record_events("authed", [f"p{play}"], [], 1.0)
            assert (await store.get_user("authed", 1.0)).recent_plays[0] == f"p{play}"
            await store.close()
        for url in (f"redis+cluster://:{SECRET}-wrong@{host_list}", f"redis+cluster://{host_list}"):
            store = RedisFeatureStore.from_url(url, DIM)
            with pytest.raises(FeatureStoreError) as failure:
                await store.get_user("authed", 1.0)
            assert SECRET not in str(failure.value)
            assert str(failure.value).startswith(redacted_url(url))
            await store.close()
    finally:
        for port in cluster.ports:
            with cluster.client(port, password=SECRET) as node:
                node.config_set("requirepass", "")


def test_cluster_urls_carry_every_seed_tls_and_credentials() -> None:
    url = f"rediss+cluster://reader:{SECRET}@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002?ssl_cert_reqs=none"
    client = RedisFeatureStore.from_url(url, DIM, max_connections=8)._client
    assert isinstance(client, RedisCluster)
    assert [(n.host, n.port) for n in client.startup_nodes] == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    kwargs = client.connection_kwargs
    assert kwargs["connection_class"] is SSLConnection and kwargs["ssl_cert_reqs"] == "none"
    assert (kwargs["username"], kwargs["password"], kwargs["max_connections"]) == ("reader", SECRET, 8)
    assert client.retry.get_retries() == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@h:6379/0", "redis://:***@h:6379/0"),
        (f"rediss://reader:{SECRET}@h:6380", "rediss://reader:***@h:6380"),
        (f"redis+cluster://:{SECRET}@a:7000,b:7001", "redis+cluster://:***@a:7000,b:7001"),
        (f"redis://h:6379/0?password={SECRET}&socket_timeout=1", "redis://h:6379/0?password=***&socket_timeout=1"),
        ("redis://:p@ss/w?rd#x@h:1/0", "redis://:***@h:1/0"),  # unencoded specials still hidden
        (f"redis://:{SECRET}", "redis://:***"),  # host forgotten: the password would parse as a port
        ("redis+cluster://[::1]:7000,h:7001/0", "redis+cluster://[::1]:7000,h:7001/0"),
        ("redis://reader@h:6379", "redis://reader@h:6379"),
    ],
)
def test_redacted_url_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [f"redis+cluster://:{SECRET}@", f"redis+cluster://:{SECRET}@h:1/3", f"redis://:{SECRET}", f"http://:{SECRET}@h"],
)
def test_a_bad_url_is_refused_without_echoing_the_password(url: str) -> None:
    with pytest.raises(ValueError, match=r"invalid redis url .*\*\*\*") as failure:
        RedisFeatureStore.from_url(url, DIM)
    assert SECRET not in str(failure.value) and failure.value.__cause__ is None


async def test_a_dead_node_fails_its_users_fast_and_the_others_keep_answering(cluster: RedisClusterProcess) -> None:
    """Within cluster-node-timeout (15 s) the surviving nodes still serve their slots.

    Past it they would mark the node failed and, with no replicas, every node answers
    CLUSTERDOWN (full coverage required): then every user fails the same quick way.
    """
    snap = user_snapshot(30, DIM, seed=2)
    store = RedisFeatureStore.from_url(cluster.url, DIM)
    await store.load_snapshot(snap)
    victim = cluster.node_for_key(user_key("user-0"))
    on_victim = [u for u in snap.user_ids if cluster.node_for_key(user_key(u)) == victim]
    elsewhere = [u for u in snap.user_ids if cluster.node_for_key(user_key(u)) != victim]
    assert on_victim and elsewhere
    cluster.kill_node(victim)
    try:
        for user_id in on_victim:
            started = time.monotonic()
            with pytest.raises(FeatureStoreError) as failure:
                await store.get_user(user_id, 2.0)
            assert time.monotonic() - started < 0.5 and not isinstance(failure.value, FeatureStoreTimeout)
            assert str(failure.value).startswith(f"{cluster.url} get_user: ")  # refused at once, named
        with pytest.raises(FeatureStoreError):
            await store.record_events(on_victim[0], ["p"], [], 0.5)
        for user_id in elsewhere:
            record = await store.get_user(user_id, 0.5)
            assert record.vector is not None
            np.testing.assert_array_equal(record.vector, snap.vectors[snap.user_ids.index(user_id)])
        await store.record_events(elsewhere[0], ["p"], [], 0.5)
    finally:
        cluster.start_node(victim)
        cluster.wait_until_ok()
    record = await store.get_user(on_victim[0], 1.0)  # the same store recovers; the node restarted empty
    assert record.vector is None
    await store.close()
