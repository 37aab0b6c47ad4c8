"""End to end on a bundle trained by `encore build` (real HetRec data when present)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, start_server, stop_server
from models.bundle import Bundle, load_bundle


@pytest.fixture(scope="module")
def trained(small_bundle_path: Path) -> Bundle:
    return load_bundle(small_bundle_path)


@pytest.fixture(scope="module")
def real_server(
    small_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, RedisProcess]]:
    redis = RedisProcess()
    redis.start()
    server = start_server(
        small_bundle_path, tmp_path_factory.mktemp("real"), "--redis-url", redis.url, "--load-features"
    )
    yield server, redis
    stop_server(server)
    redis.stop()


def test_trained_bundle_serves_both_surfaces_with_its_default_model(
    real_server: tuple[ServerProcess, RedisProcess], trained: Bundle
) -> None:
    server, _ = real_server
    users = trained.load_users().user_ids
    seed = trained.catalog.item_ids[int(trained.popularity[3])]
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for user in users[:20]:
            home = stub.Rank(pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME, limit=10), timeout=5)
            playing = stub.Rank(
                pb.RankRequest(user_id=user, surface=pb.SURFACE_NOW_PLAYING, seed_item_id=seed, limit=10), timeout=5
            )
            for response in (home, playing):
                assert response.model_version == trained.default_model
                assert list(response.degraded) == []
                assert len(response.items) == 10
                assert all(item.item_id in trained.catalog.index_of for item in response.items)
            assert seed not in {i.item_id for i in playing.items}


def test_now_playing_recommends_items_close_to_the_seed(
    real_server: tuple[ServerProcess, RedisProcess], trained: Bundle
) -> None:
    server, _ = real_server
    vectors = np.asarray(trained.item_vectors)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for rank_of_seed in (0, 5, 20):
            seed = int(trained.popularity[rank_of_seed])
            response = stub.Rank(
                pb.RankRequest(
                    user_id="someone-new",
                    surface=pb.SURFACE_NOW_PLAYING,
                    seed_item_id=trained.catalog.item_ids[seed],
                    limit=10,
                ),
                timeout=5,
            )
            picked = [trained.catalog.index_of[i.item_id] for i in response.items]
            similarity_to_seed = unit[picked] @ unit[seed]
            popular_baseline = unit[trained.popularity[:200]] @ unit[seed]
            assert similarity_to_seed.mean() > popular_baseline.mean()
