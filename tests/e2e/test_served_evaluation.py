"""What the offline evaluation measures is what a client receives: one code path, over gRPC.

A real ``encore serve`` on a bundle built by ``encore build`` (real HetRec data when present),
with its user features in a real Redis (the ``known`` field) — the offline evaluation runs the
same pipeline in process on an embedded store, and must return the same lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import scipy.sparse as sp

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, start_server, stop_server
from models.bundle import Bundle, load_bundle
from models.evaluation import SERVED, evaluate_bundle

LIMIT = 100
N_USERS = 12


@pytest.fixture(scope="module")
def trained(small_bundle_path: Path) -> Bundle:
    return load_bundle(small_bundle_path)


@pytest.fixture(scope="module")
def server(small_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("served-evaluation")
    settings = tmp / "settings.yaml"
    # the evaluation's limit, and budgets a loaded test machine never hits (a degraded answer differs)
    settings.write_text(
        "redis_timeout_ms: 2000\n"
        "stages: {user_features_ms: 2000, retrieval_ms: 2000, scoring_ms: 4000, reserve_ms: 0}\n"
        "surfaces:\n"
        "  home: {budget_ms: 10000}\n"
        "  now_playing: {budget_ms: 10000, max_limit: 100}\n"
    )
    redis = RedisProcess()
    redis.start()
    process = start_server(
        small_bundle_path, tmp, "--redis-url", redis.url, "--load-features", "--config", str(settings)
    )
    yield process
    stop_server(process)
    redis.stop()


def _rank(stub: pb_grpc.RankingServiceStub, user: str, seed: str | None = None) -> list[str]:
    request = (
        pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME, limit=LIMIT)
        if seed is None
        else pb.RankRequest(user_id=user, surface=pb.SURFACE_NOW_PLAYING, seed_item_id=seed, limit=LIMIT)
    )
    response = stub.Rank(request, timeout=20)
    assert list(response.degraded) == []
    return [item.item_id for item in response.items]


def test_home_never_returns_an_item_the_user_already_knows(server: ServerProcess, trained: Bundle) -> None:
    users = trained.load_users()
    rows = [r for r in range(len(users.user_ids)) if users.known(r).size][:30]
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for row in rows:
            known = {trained.catalog.item_id(int(i)) for i in users.known(row)}
            served = _rank(stub, users.user_ids[row])
            assert len(served) == LIMIT
            assert not known & set(served), users.user_ids[row]


def test_now_playing_follows_the_seed(server: ServerProcess, trained: Bundle) -> None:
    users = trained.load_users()
    row = next(r for r in range(len(users.user_ids)) if users.known(r).size >= 5)
    user = users.user_ids[row]
    first, second = (trained.catalog.item_id(int(i)) for i in users.known(row)[[0, -1]])
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        home = _rank(stub, user)[:10]
        a, b = _rank(stub, user, first)[:10], _rank(stub, user, second)[:10]
    assert a != b
    assert len(set(a) & set(b)) < 10 and len(set(a) & set(home)) < 10
    # the seed's own co-listen neighbours lead its list
    row_a = trained.item_neighbors[trained.catalog.index_of[first]]
    neighbours = {trained.catalog.item_id(int(i)) for i in row_a[row_a >= 0]}
    assert len(set(a) & neighbours) >= 3


def test_offline_evaluation_lists_equal_what_the_server_returns(server: ServerProcess, trained: Bundle) -> None:
    users = trained.load_users()
    rows = np.array([r for r in range(len(users.user_ids)) if users.known(r).size >= 2][:N_USERS], dtype=np.int64)
    empty_test = sp.csr_matrix((len(users.user_ids), len(trained.catalog)), dtype=np.float32)
    result = evaluate_bundle(trained, empty_test, rows, seed=7, models=[trained.default_model])
    offline = result.lists[SERVED]
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for i, user in enumerate(result.queries.user_ids):
            home = [trained.catalog.item_id(j) for j in offline["home"][i]]
            assert _rank(stub, user) == home, user
            for j, seed in enumerate(result.queries.seeds[i].tolist()):
                expected = [trained.catalog.item_id(k) for k in offline["now_playing"][i][j]]
                assert _rank(stub, user, trained.catalog.item_id(seed)) == expected, (user, seed)
