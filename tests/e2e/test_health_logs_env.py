"""A real `encore serve` configured from ENCORE_* variables, logging JSON: the metrics port's four paths,
readiness dropping to 503 while a drain holds the process alive, and every log line a JSON object."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, start_server, stop_server


def get(server: ServerProcess, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}{path}", timeout=5) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def wait_for(condition: object, what: str, timeout_s: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_health_paths_readiness_during_drain_and_json_logs(
    tiny_bundle_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = RedisProcess()
    redis.start()
    # settings from the environment: the store, a single admission slot, a store timeout long enough
    # that a write to a paused Redis stays in flight
    monkeypatch.setenv("ENCORE_REDIS_URL", redis.url)
    monkeypatch.setenv("ENCORE_MAX_IN_FLIGHT", "1")
    monkeypatch.setenv("ENCORE_REDIS_TIMEOUT_MS", "60000")
    server = start_server(tiny_bundle_path, tmp_path, "--load-features", "--log-format", "json")
    assert redis.process is not None
    try:
        assert get(server, "/healthz") == 200
        assert get(server, "/readyz") == 200
        assert get(server, "/metrics") == 200
        assert get(server, "/nothing-here") == 404
        assert "--redis-url" not in list(server.process.args)  # type: ignore[arg-type]  # from ENCORE_REDIS_URL

        redis.process.send_signal(signal.SIGSTOP)  # reads time out (degraded), writes hang
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RankingServiceStub(channel)
            reply = stub.Rank(
                pb.RankRequest(user_id="u2", surface=pb.SURFACE_HOME, limit=5, request_id="json-log-1"), timeout=5
            )
            assert list(reply.degraded) == ["user_features"]
            write = stub.RecordEvents.future(
                pb.RecordEventsRequest(user_id="u2", events=[pb.Event(type=pb.EVENT_TYPE_PLAY, item_id="i00001")]),
                timeout=30,
            )

            def write_in_flight() -> bool:  # the one admission slot is taken: a Rank is refused
                try:
                    stub.Rank(pb.RankRequest(user_id="u3", surface=pb.SURFACE_HOME, limit=5), timeout=5)
                except grpc.RpcError as error:
                    return error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                return False

            wait_for(write_in_flight, "the RecordEvents call to hold the admission slot")
            server.process.send_signal(signal.SIGTERM)  # NOT_SERVING, then the drain waits for the write
            wait_for(lambda: get(server, "/readyz") == 503, "/readyz to turn 503 during the drain")
            assert get(server, "/healthz") == 200 and server.process.poll() is None
            redis.process.send_signal(signal.SIGCONT)
            assert write.result(timeout=30) is not None  # the drained call completes
        server.process.wait(timeout=30)
        assert server.process.returncode == 0
    finally:
        if redis.process is not None:
            redis.process.send_signal(signal.SIGCONT)
        stop_server(server)
        redis.stop()

    records = [json.loads(line) for line in server.log().splitlines()]  # every line is one JSON object
    assert records and all(
        {"timestamp", "level", "logger", "message", "request_id", "surface", "stage"} <= r.keys() for r in records
    )
    degraded = [r for r in records if r["request_id"] == "json-log-1"]
    assert [(r["level"], r["surface"], r["stage"]) for r in degraded] == [("WARNING", "home", "user_features")]
    assert "user_features degraded" in degraded[0]["message"]
    assert any(r["message"].startswith("encore serving bundle") and r["level"] == "INFO" for r in records)
    assert any("shutting down" in r["message"] for r in records)


def test_with_workers_the_parent_is_ready_once_every_worker_serves(tiny_bundle_path: Path, tmp_path: Path) -> None:
    redis = RedisProcess()
    redis.start()
    server = start_server(
        tiny_bundle_path, tmp_path, "--workers", "2", "--redis-url", redis.url, "--load-features", new_session=True
    )
    try:
        wait_for(lambda: get(server, "/readyz") == 200, "both workers SERVING")
        assert (get(server, "/healthz"), get(server, "/metrics"), get(server, "/x")) == (200, 200, 404)
        with grpc.insecure_channel(server.target) as channel:
            pb_grpc.RankingServiceStub(channel).Rank(pb.RankRequest(user_id="u2", surface=pb.SURFACE_HOME), timeout=5)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
            assert 'encore_requests_total{method="Rank",outcome="OK",surface="home"}' in reply.read().decode()
    finally:
        stop_server(server)
        redis.stop()
