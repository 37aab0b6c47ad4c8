"""A server reading versioned Redis features: a new bundle's load, run while serving, is switched to
only once complete, through a bundle hot reload, without a failed request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loadtests.harness import REPO, RedisProcess, start_server, stop_server
from tests.e2e.rank_load import RankLoad, wait_for
from tests.support import tiny_bundle


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
    load = RankLoad(server)
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
