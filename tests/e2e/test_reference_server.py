"""The benchmark's straight-line reference (``loadtests.reference``) answers Home exactly as Encore
does with its cascade off, on one real Redis, over real gRPC, with real ONNX models."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, start_reference_server, start_server, stop_server
from models.bundle import write_bundle
from models.linear_ranker import linear_ranker
from tests.support import tiny_contents, user_snapshot

USERS = [f"user-{i}" for i in range(150)]
WITH_EVENTS = USERS[100:]  # 50 users whose plays and a skip are recorded (through Encore) first
#: Encore with its cascade off and stage budgets no CI hiccup can exhaust (a degraded answer would
#: differ for a reason that is not the one under test); the reference reads the same file.
SETTINGS = """
stages: {user_features_ms: 5000, retrieval_ms: 5000, scoring_ms: 5000}
surfaces:
  home: {budget_ms: 20000, cascade_size: 0}
"""
TIMEOUT_S = 30.0


def cascade_bundle(parent: Path) -> Path:
    """1,200 items (4 per artist), 200 users, a full linear model over several features and a light
    model ranking by popularity alone (so the cascade, were it on, would change the lists)."""
    full = {"retrieval_score": 1.0, "history_colisten_sum": 0.5, "recent_item_cosine": 0.8, "item_popularity_log": 0.1}
    contents = replace(
        tiny_contents(n_items=1200, n_users=200, dim=16, seed=7),
        version="reference-e2e",
        models={"full-v1": linear_ranker(full), "lite-v1": linear_ranker({"item_popularity_log": 1.0})},
        default_model="full-v1",
        light_model="lite-v1",
        users=user_snapshot(200, 16, seed=3, n_items=1200),
    )
    return write_bundle(contents, parent / contents.version)


class Servers(NamedTuple):
    encore: ServerProcess
    reference: ServerProcess
    bundle: Path
    redis_url: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Encore and the reference on one Redis that Encore loaded with the bundle's user features."""
    tmp = tmp_path_factory.mktemp("reference")
    bundle = cascade_bundle(tmp)
    config = tmp / "settings.yaml"
    config.write_text(SETTINGS)
    redis = RedisProcess()
    redis.start()
    started: list[ServerProcess] = []
    try:
        args = ("--redis-url", redis.url, "--load-features", "--config", str(config))
        started.append(start_server(bundle, tmp, *args))
        started.append(start_reference_server(bundle, redis.url, tmp, "--config", str(config)))
        yield Servers(started[0], started[1], bundle, redis.url)
    finally:
        for server in started:
            stop_server(server)
        redis.stop()


def home(stub: pb_grpc.RankingServiceStub, user: str) -> pb.RankResponse:
    return stub.Rank(pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME, limit=20), timeout=TIMEOUT_S)


def test_reference_ranks_home_like_encore_without_cascade_before_and_after_events(
    servers: Servers,
) -> None:
    encore, reference = servers.encore, servers.reference
    with grpc.insecure_channel(encore.target) as e_channel, grpc.insecure_channel(reference.target) as r_channel:
        e_stub, r_stub = pb_grpc.RankingServiceStub(e_channel), pb_grpc.RankingServiceStub(r_channel)
        skipped: dict[str, str] = {}
        for user in WITH_EVENTS:
            before = [i.item_id for i in home(e_stub, user).items]
            played = [before[5], before[10], before[15]]
            skipped[user] = before[0]
            events = [
                pb.Event(type=pb.EVENT_TYPE_PLAY, item_id=item, timestamp_ms=1000 + k) for k, item in enumerate(played)
            ]
            events.append(pb.Event(type=pb.EVENT_TYPE_SKIP, item_id=before[0], timestamp_ms=2000))
            e_stub.RecordEvents(pb.RecordEventsRequest(user_id=user, events=events), timeout=TIMEOUT_S)
        mismatches = []
        for user in USERS:
            ours, theirs = home(e_stub, user), home(r_stub, user)
            assert not ours.degraded and ours.model_version == "full-v1", (user, ours.degraded, ours.model_version)
            a, b = [i.item_id for i in ours.items], [i.item_id for i in theirs.items]
            assert len(a) == 20, (user, a)
            if a != b:
                mismatches.append((user, a, b))
            if user in skipped:
                assert skipped[user] not in a  # the events landed: the skip is filtered by both
    assert not mismatches, f"{len(mismatches)} of {len(USERS)} users differ, first: {mismatches[0]}"


def test_reference_refuses_now_playing_and_times_itself_when_asked(
    servers: Servers,
) -> None:
    reference = servers.reference
    with grpc.insecure_channel(reference.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Rank(
                pb.RankRequest(user_id="user-1", surface=pb.SURFACE_NOW_PLAYING, seed_item_id="i00001"),
                timeout=TIMEOUT_S,
            )
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "SURFACE_HOME only" in str(refused.value.details())
        timed = stub.Rank(pb.RankRequest(user_id="user-1", surface=pb.SURFACE_HOME, debug=True), timeout=TIMEOUT_S)
        assert [t.stage for t in timed.timings] == ["total"] and timed.timings[0].milliseconds > 0
        assert not home(stub, "user-1").timings  # only with debug


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def test_reference_workers_share_one_port_and_stop_on_sigterm(servers: Servers, tmp_path: Path) -> None:
    workers = start_reference_server(servers.bundle, servers.redis_url, tmp_path, "--workers", "2")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(_children(workers.process.pid)) < 2:
            assert time.monotonic() < deadline, f"two workers did not start:\n{workers.log()}"
            time.sleep(0.05)
        while workers.log().count("reference serving") < 2:  # both bound the port and warmed up
            assert time.monotonic() < deadline, f"both workers did not serve:\n{workers.log()}"
            time.sleep(0.05)
        for user in USERS[:10]:  # a fresh connection each time: the kernel spreads them over workers
            with grpc.insecure_channel(workers.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                assert len(home(pb_grpc.RankingServiceStub(channel), user).items) == 20
        os.kill(workers.process.pid, signal.SIGTERM)
        assert workers.process.wait(timeout=TIMEOUT_S) == 0, workers.log()
    finally:
        stop_server(workers)
