"""A really full disk under the capture and exposure logs (a tiny tmpfs, filled up): serving never
errors or slows down, the drops are counted, and logging resumes, uncorrupted, once space is freed.

The disk is full before the server writes anything (so no record is ever half-written) and big
enough that what follows the freeing does not fill it again within the test.
"""

from __future__ import annotations

import errno
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import ServerProcess
from serving.capture import read_captures
from tests.e2e.conftest import EXPERIMENTS
from tests.fault.conftest import Reporter, finish, metric
from tests.fault.load import Load, wait_until
from tests.fault.report import summarise

Serve = Callable[..., ServerProcess]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted under ``tmp_path`` (the tests run as root), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True, capture_output=True)


def fill(disk: Path) -> Path:
    """Write a filler file until the filesystem says ENOSPC."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def written(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def test_full_disk_for_capture_and_exposure_logs(
    tiny_disk: Path, tmp_path: Path, serve: Serve, reporter: Reporter, tiny_bundle_path: Path, quiet_config: Path
) -> None:
    captures, exposures = tiny_disk / "captures", tiny_disk / "exposures"
    captures.mkdir()
    exposures.mkdir()
    filler = fill(tiny_disk)
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(EXPERIMENTS)  # a 50/50 Home experiment: every Home answer logs an exposure
    server = serve(
        tiny_bundle_path,
        *("--config", str(quiet_config), "--experiments", str(experiments), "--capture-fraction", "1.0"),
        *("--capture-dir", str(captures), "--exposure-log-dir", str(exposures)),
    )
    with Load(server.target, tag="disk") as load:
        load.wait_for_samples(300)  # ~2 s with a full disk
        full_until = time.monotonic()
        full = load.samples()
        assert wait_until(lambda: metric(server, "encore_captures_dropped_total", reason="write_error") > 0, 5)
        assert wait_until(lambda: metric(server, "encore_exposures_dropped_total", reason="write_error") > 0, 5)
        dropped = (
            metric(server, "encore_captures_dropped_total", reason="write_error"),
            metric(server, "encore_exposures_dropped_total", reason="write_error"),
        )
        filler.unlink()  # space again: the next batches are written
        freed = time.monotonic()
        # exposures are deduplicated per (user, experiment) and the load's users were all seen while
        # the disk was full: new users show that exposure logging resumed
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RankingServiceStub(channel)
            for n in range(20):
                stub.Rank(pb.RankRequest(user_id=f"fresh-{n}", surface=pb.SURFACE_HOME, limit=5), timeout=5)
        assert wait_until(lambda: written(captures) > 0 and written(exposures) > 0, 10), "logging did not resume"
        resumed = time.monotonic() - freed
        load.wait_for_samples(60)
    samples = load.samples()
    reporter.add(summarise("capture+exposure disk full", full, note=f"dropped {dropped[0]:.0f}+{dropped[1]:.0f}"))
    after = summarise("  ...then space freed", samples[len(full) :], note="recovery: log writes resumed")
    report = reporter.add(replace(after, recovery_s=resumed))
    assert full_until > 0 and report.sent > 0
    answers = summarise("all", samples)
    assert answers.error_count == 0 and answers.degraded == 0, answers
    assert answers.max_ms is not None and answers.max_ms < 250, (
        answers
    )  # the full disk never stalls an answer (generous sanity bound)
    assert metric(server, "encore_captures_total") > 0
    finish(server)  # drains the queues into the files
    # what was written after the disk had room again is whole: every capture and every exposure parses
    assert sum(1 for _ in read_captures([captures])) > 0
    for path in exposures.iterdir():
        for line in path.read_text().splitlines():
            json.loads(line)
