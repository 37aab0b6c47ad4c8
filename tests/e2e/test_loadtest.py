"""The locust load test, run headless against a real server on the tiny bundle."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.harness import ServerProcess, start_server, stop_server
from tests.support import REPO

pytestmark = pytest.mark.e2e

REQUEST_NAMES = {"Rank home", "Rank now_playing", "RecordEvents"}


@pytest.fixture(scope="module")
def embedded_server(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tiny_bundle_path, tmp_path_factory.mktemp("loadtest-server"))
    yield server
    stop_server(server)


def run_locust(
    server: ServerProcess, bundle: Path, csv_prefix: Path, *extra: str, run_time: str = "4s"
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO / "loadtests" / "locust" / "locustfile.py"),
        "--headless",
        "--users",
        "8",
        "--spawn-rate",
        "8",
        "--run-time",
        run_time,
        "--host",
        server.target,
        "--bundle",
        str(bundle),
        "--csv",
        str(csv_prefix),
        "--only-summary",
        # a generous deadline: the run asserts the traffic and the verdict, not the machine's speed
        "--rpc-timeout",
        "10",
        *extra,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def stats_rows(csv_prefix: Path) -> dict[str, dict[str, str]]:
    with Path(f"{csv_prefix}_stats.csv").open(newline="") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


def test_loadtest_passes_with_the_traffic_mix_split_by_surface_and_no_failures(
    embedded_server: ServerProcess, tiny_bundle_path: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "encore"
    result = run_locust(embedded_server, tiny_bundle_path, prefix, "--max-p99-ms", "5000")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "encore loadtest PASSED" in output
    rows = stats_rows(prefix)
    assert set(rows) >= REQUEST_NAMES | {"Aggregated"}, rows.keys()
    for name in REQUEST_NAMES:
        assert int(rows[name]["Request Count"]) > 0, (name, rows[name])
        assert int(rows[name]["Failure Count"]) == 0, (name, rows[name])
    assert rows["Rank home"]["Type"] == "grpc"


def test_loadtest_fails_and_says_why_when_the_p99_limit_is_exceeded(
    embedded_server: ServerProcess, tiny_bundle_path: Path, tmp_path: Path
) -> None:
    result = run_locust(embedded_server, tiny_bundle_path, tmp_path / "encore", "--max-p99-ms", "0.001", run_time="2s")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "loadtest failed: p99 of all requests is" in output
    assert "above --max-p99-ms 0.001" in output
    assert "encore loadtest FAILED" in output
