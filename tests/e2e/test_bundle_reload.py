"""Bundle hot reload under load: swapped without a failed request; a broken bundle is refused."""

from __future__ import annotations

import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import grpc

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import ServerProcess, start_server, stop_server
from tests.support import tiny_bundle


class Load:
    """Closed-loop Rank traffic on both surfaces from a background thread, recording every answer."""

    def __init__(self, server: ServerProcess) -> None:
        self.versions: list[str] = []
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
                surface = pb.SURFACE_HOME if i % 2 else pb.SURFACE_NOW_PLAYING
                request = pb.RankRequest(user_id=f"u{i % 40}", surface=surface, seed_item_id="i00005", limit=5)
                try:
                    response = stub.Rank(request, timeout=2)
                    if len(response.items) != 5:
                        self.errors.append(f"{len(response.items)} items")
                    self.versions.append(response.bundle_version)
                except grpc.RpcError as exc:
                    self.errors.append(f"{exc.code().name}: {exc.details()}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_for(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_new_bundle_is_swapped_in_under_load_and_a_broken_one_is_refused(
    tiny_bundle_path: Path, tmp_path: Path
) -> None:
    second = tiny_bundle(tmp_path / "bundles", seed=1)  # version tiny-1, other vectors and popularity
    broken = tmp_path / "bundles" / "broken"
    shutil.copytree(second, broken)
    (broken / "index.faiss").write_bytes(b"truncated")
    current = tmp_path / "current"
    current.symlink_to(tiny_bundle_path)
    settings = tmp_path / "settings.yaml"
    settings.write_text("bundle_reload_s: 0.2\n")
    server = start_server(current, tmp_path, "--config", str(settings))
    load = Load(server)
    try:
        assert wait_for(lambda: len(load.versions) > 50)
        tmp_link = tmp_path / "current.new"
        tmp_link.symlink_to(second)
        os.replace(tmp_link, current)  # atomic switch, as a deploy would do it
        assert wait_for(lambda: load.versions[-1:] == ["tiny-1"]), server.log()
        swapped_at = len(load.versions)
        assert wait_for(lambda: len(load.versions) > swapped_at + 50)

        tmp_link.symlink_to(broken)
        os.replace(tmp_link, current)
        assert wait_for(lambda: "bundle reload refused" in server.log())
        served_after = len(load.versions)
        assert wait_for(lambda: len(load.versions) > served_after + 50)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        assert 'encore_bundle_reloads_total{outcome="applied"} 1.0' in text
        assert 'encore_bundle_reloads_total{outcome="rejected"} 1.0' in text
        assert 'encore_bundle_info{bundle_version="tiny-1",model_version="linear-v1"} 1.0' in text
        assert 'encore_bundle_info{bundle_version="tiny-0",model_version="linear-v1"} 0.0' in text
    finally:
        load.stop()
        stop_server(server)
    assert load.errors == []  # not one request failed or came back short during either reload
    first_new = load.versions.index("tiny-1")
    assert set(load.versions[:first_new]) == {"tiny-0"}
    assert set(load.versions[first_new:]) == {"tiny-1"}  # no flapping back, the broken bundle never served
    assert "index.faiss" in server.log()
