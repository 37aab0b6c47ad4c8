"""Bundle hot reload under load: swapped without a failed request; a broken bundle is refused."""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from encore.v1 import ranking_pb2 as pb
from loadtests.harness import start_server, stop_server
from tests.e2e.rank_load import RankLoad, wait_for
from tests.support import tiny_bundle


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
    load = RankLoad(server, (pb.SURFACE_NOW_PLAYING, pb.SURFACE_HOME), "i00005")
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
