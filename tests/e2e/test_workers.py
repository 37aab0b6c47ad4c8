"""`encore serve --workers 2`: one port, both workers serving, aggregated metrics, restart, drain."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, start_server, stop_server

EVERYONE = """
experiments:
  - key: everyone
    surface: home
    coverage: 1.0
    status: running
    variants:
      - {key: a, weight: 0.5}
      - {key: b, weight: 0.5}
"""


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def rank_on_new_connection(server: ServerProcess, user: str) -> pb.RankResponse:
    # a fresh channel is a fresh TCP connection: SO_REUSEPORT spreads connections over workers
    with grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return pb_grpc.RankingServiceStub(channel).Rank(
            pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME, limit=5), timeout=5
        )


REDIS_URL: dict[str, str] = {}


@pytest.fixture(scope="module")
def workers_server(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("workers")
    redis = RedisProcess()
    redis.start()
    REDIS_URL["workers"] = redis.url
    experiments = tmp / "experiments.yaml"
    experiments.write_text(EVERYONE)
    server = start_server(
        tiny_bundle_path,
        tmp,
        "--workers",
        "2",
        "--redis-url",
        redis.url,
        "--load-features",
        "--experiments",
        str(experiments),
    )
    deadline = time.monotonic() + 30
    while len(children(server.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    yield server
    stop_server(server)
    redis.stop()


def test_two_workers_share_the_port_and_both_serve(workers_server: ServerProcess) -> None:
    assert len(children(workers_server.process.pid)) == 2
    for i in range(120):
        response = rank_on_new_connection(workers_server, f"user-{i}")
        assert len(response.items) == 5 and list(response.degraded) == []
    # each worker writes its own exposure files, named with its pid
    deadline = time.monotonic() + 10
    pids: set[str] = set()
    while len(pids) < 2 and time.monotonic() < deadline:
        pids = {f.name.split("-")[2] for f in (workers_server.workdir / "exposures").glob("exposures-*.jsonl")}
        time.sleep(0.1)
    assert len(pids) == 2, pids


def test_the_parents_feature_load_is_the_bundles_versioned_load(
    workers_server: ServerProcess, tiny_bundle_path: Path
) -> None:
    import redis as redis_client

    from features.keys import ACTIVE_KEY, marker_key

    version = tiny_bundle_path.name
    with redis_client.Redis.from_url(REDIS_URL["workers"]) as r:
        assert r.get(ACTIVE_KEY) == version.encode()  # written and marked complete by the parent
        assert int(r.hget(marker_key(version), "rows") or 0) > 0


def test_metrics_are_aggregated_over_workers_on_one_endpoint(workers_server: ServerProcess) -> None:
    before = metric(workers_server, 'encore_requests_total{method="Rank",outcome="OK",surface="home"}')
    for i in range(30):
        rank_on_new_connection(workers_server, f"metrics-{i}")
    after = metric(workers_server, 'encore_requests_total{method="Rank",outcome="OK",surface="home"}')
    assert after - before == 30


def metric(server: ServerProcess, series: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


def test_a_killed_worker_is_replaced_and_serving_continues(workers_server: ServerProcess) -> None:
    parent = workers_server.process.pid
    victim = min(children(parent))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        current = children(parent)
        if len(current) == 2 and victim not in current:
            break
        time.sleep(0.1)
    assert victim not in children(parent) and len(children(parent)) == 2
    time.sleep(1.0)  # the new worker warms up before it binds
    for i in range(20):
        assert len(rank_on_new_connection(workers_server, f"after-{i}").items) == 5
    assert "restarting" in workers_server.log()


def test_sigterm_drains_every_worker_and_exits_cleanly(tiny_bundle_path: Path, tmp_path: Path) -> None:
    redis = RedisProcess()
    redis.start()
    try:
        server = start_server(tiny_bundle_path, tmp_path, "--workers", "2", "--redis-url", redis.url)
        deadline = time.monotonic() + 30
        while len(children(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = children(server.process.pid)
        assert len(workers) == 2
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
        assert server.log().count("NOT_SERVING, draining") == 2
    finally:
        redis.stop()


def test_workers_without_redis_are_refused_with_the_reason(tiny_bundle_path: Path) -> None:
    import subprocess
    import sys

    from tests.support import REPO

    result = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--bundle", str(tiny_bundle_path), "--workers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--workers: needs --redis-url" in result.stderr
