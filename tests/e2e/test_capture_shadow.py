"""Capture to length-delimited protobuf and in-server shadow scoring, over a real server."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import grpc

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import start_server, stop_server
from serving.capture import in_capture_sample, read_captures


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def test_sampled_users_are_captured_and_the_shadow_model_is_scored(tiny_bundle_path: Path, tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("capture_fraction: 0.5\nsurfaces:\n  home: {shadow_model: linear-v2}\n")
    server = start_server(
        tiny_bundle_path, tmp_path, "--config", str(settings), "--capture-dir", str(tmp_path / "captures")
    )
    try:
        users = [f"cap-{i}" for i in range(60)]
        answers: dict[str, pb.RankResponse] = {}
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RankingServiceStub(channel)
            for user in users:
                answers[user] = stub.Rank(pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME, limit=8), timeout=5)
                stub.Rank(
                    pb.RankRequest(user_id=user, surface=pb.SURFACE_NOW_PLAYING, seed_item_id="i00007"), timeout=5
                )
        sampled = {u for u in users if in_capture_sample(u, 0.5)}
        deadline = time.monotonic() + 10
        captured = []
        while time.monotonic() < deadline:
            captured = list(read_captures([tmp_path / "captures"])) if (tmp_path / "captures").exists() else []
            if len(captured) >= 2 * len(sampled):
                break
            time.sleep(0.1)
        assert len(captured) == 2 * len(sampled)
        assert {c.request.user_id for c in captured} == sampled
        for c in captured:
            assert c.status == "OK" and c.server_latency_ms > 0 and c.ts_ms > 0
            assert c.request.request_id == c.response.request_id
            if c.request.surface == pb.SURFACE_HOME:
                served = answers[c.request.user_id]
                assert [i.item_id for i in c.response.items] == [i.item_id for i in served.items]
                assert c.response.model_version == "linear-v1" and c.response.bundle_version == "tiny-0"
        text = metrics_text(server.metrics_port)
        assert 'encore_shadow_rbo_count{model="linear-v2",surface="home"} 60.0' in text
        assert 'encore_shadow_rbo_count{model="linear-v2",surface="now_playing"}' not in text
        # the counter moves once the writer has reported the batch, a moment after the bytes land
        wanted = f"encore_captures_total {float(2 * len(sampled))}"
        deadline = time.monotonic() + 30
        while wanted not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            text = metrics_text(server.metrics_port)
        assert wanted in text
    finally:
        stop_server(server)


def test_an_unknown_shadow_model_is_refused_at_start_up(tiny_bundle_path: Path, tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("surfaces:\n  now_playing: {shadow_model: nope}\n")
    try:
        start_server(tiny_bundle_path, tmp_path, "--config", str(settings))
    except RuntimeError as exc:
        assert "surfaces.now_playing.shadow_model: 'nope' is not a model" in str(exc)
    else:
        raise AssertionError("the server started with an unknown shadow model")
