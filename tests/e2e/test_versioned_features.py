"""A server reading versioned Redis features: a new bundle's load, run while serving, is switched to
only once complete, through a bundle hot reload, without a failed request."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import REPO, RedisProcess, ServerProcess, start_server, stop_server
from tests.support import tiny_bundle


class Load:
    """Closed-loop Rank traffic from a background thread, recording versions, degradations and errors."""

    def __init__(self, server: ServerProcess) -> None:
        self.versions: list[str] = []
        self.degraded: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server.target,), daemon=True)
        self._thread.start()

    def _run(self, target: str) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.RankingServiceStub(channel)
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    response = stub.Rank(
                        pb.RankRequest(user_id=f"u{i % 40}", surface=pb.SURFACE_HOME, limit=5), timeout=2
                    )
                    self.versions.append(response.bundle_version)
                    self.degraded.extend(f"{len(self.versions)}:{d}" for d in response.degraded)
                except grpc.RpcError as exc:
                    self.errors.append(f"{exc.code().name}: {exc.details()}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_new_load_is_read_only_once_complete_and_the_switch_fails_no_request(
    tiny_bundle_path: Path, tmp_path: Path, redis_server: RedisProcess
) -> None:
    second = tiny_bundle(tmp_path / "bundles", seed=1)  # version tiny-1
    current = tmp_path / "current"
    current.symlink_to(tiny_bundle_path)
    settings = tmp_path / "settings.yaml"
    settings.write_text("bundle_reload_s: 0.2\nredis_timeout_ms: 200\n")  # no timeouts from CPU contention
    url = redis_server.url
    server = start_server(current, tmp_path, "--redis-url", url, "--load-features", "--config", str(settings))
    load = Load(server)
    marks = (0, 0)
    try:
        assert "reading user features of load tiny-0" in server.log()
        assert wait_for(lambda: len(load.versions) > 50)
        link = tmp_path / "current.new"
        link.symlink_to(second)
        os.replace(link, current)  # the bundle first: its load is not there yet
        assert wait_for(lambda: load.versions[-1:] == ["tiny-1"]), server.log()
        served = len(load.versions)
        assert wait_for(lambda: len(load.versions) > served + 50)
        assert "load tiny-1" not in server.log()  # still reading tiny-0's complete load

        cmd = [sys.executable, "-m", "cli", "features", "load", "--bundle", str(second), "--redis-url", url]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "load tiny-1 complete: 50 users" in done.stdout
        assert wait_for(lambda: "reading user features of load tiny-1 (was tiny-0)" in server.log()), server.log()
        switched = len(load.versions)
        marks = (served, switched)
        assert wait_for(lambda: len(load.versions) > switched + 50)
    finally:
        load.stop()
        stop_server(server)
    assert load.errors == []
    # cold (missing, malformed) features would be a store error; only CPU-contention timeouts may degrade
    reasons = [line for line in server.log().splitlines() if "user_features degraded" in line]
    assert all("Timeout" in line for line in reasons), (reasons, load.degraded, marks)
