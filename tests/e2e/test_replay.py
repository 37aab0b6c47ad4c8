"""`encore replay` against real servers: a primary, a secondary on the same version, and a candidate."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from encore.v1 import capture_pb2
from encore.v1 import ranking_pb2 as pb
from loadtests.harness import ServerProcess, free_port, start_server, stop_server
from loadtests.replay.run import main
from serving.capture import encode_delimited

pytestmark = pytest.mark.e2e

#: The candidate: every Home and Now Playing user scored by linear-v2 (popularity) instead of linear-v1.
CANDIDATE_EXPERIMENTS = """
experiments:
  - key: home-v2
    surface: home
    coverage: 1.0
    status: running
    variants:
      - {key: control, weight: 0.0}
      - {key: v2, weight: 1.0, params: {model_version: linear-v2}}
  - key: np-v2
    surface: now_playing
    coverage: 1.0
    status: running
    variants:
      - {key: control, weight: 0.0}
      - {key: v2, weight: 1.0, params: {model_version: linear-v2}}
"""

N_CAPTURES = 100
INVALID = 2  # captured Now Playing requests without a seed: INVALID_ARGUMENT on every version


@dataclass
class Fleet:
    primary: ServerProcess
    secondary: ServerProcess
    candidate: ServerProcess


@pytest.fixture(scope="module")
def fleet(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("replay-servers")
    experiments = tmp / "candidate-experiments.yaml"
    experiments.write_text(CANDIDATE_EXPERIMENTS)
    specs: dict[str, tuple[str, ...]] = {
        "primary": (),
        "secondary": (),
        "candidate": ("--experiments", str(experiments)),
    }
    dirs = {role: tmp / role for role in specs}
    for d in dirs.values():
        d.mkdir()
    with ThreadPoolExecutor(len(specs)) as pool:  # start the three together: ~1 s instead of ~3
        futures = {
            role: pool.submit(start_server, tiny_bundle_path, dirs[role], *extra) for role, extra in specs.items()
        }
        started: dict[str, ServerProcess] = {}
        try:
            for role, future in futures.items():
                started[role] = future.result()
        except BaseException:
            for f in futures.values():
                if f.done() and f.exception() is None:
                    stop_server(f.result())
            raise
    yield Fleet(**started)
    for server in started.values():
        stop_server(server)


@pytest.fixture(scope="module")
def capture_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~100 captured exchanges, 20 ms apart (a 2 s recording): Home and Now Playing, two invalid ones."""
    directory = tmp_path_factory.mktemp("captures")
    chunks: list[bytes] = []
    for i in range(N_CAPTURES):
        home = i % 5 < 3
        request = pb.RankRequest(
            user_id=f"u{i % 50}",
            surface=pb.SURFACE_HOME if home else pb.SURFACE_NOW_PLAYING,
            seed_item_id="" if home else f"i{(7 * i) % 400:05d}",
            limit=10,
            request_id=f"cap-{i}",
            context=pb.RequestContext(device="ios", locale="en-GB"),
        )
        status = "OK"
        if i < INVALID:
            request.surface, request.seed_item_id, status = pb.SURFACE_NOW_PLAYING, "", "INVALID_ARGUMENT"
        chunks.append(
            encode_delimited(
                capture_pb2.CapturedRank(
                    ts_ms=1_700_000_000_000 + 20 * i, request=request, server_latency_ms=3.0, status=status
                )
            )
        )
    # two files, as two workers would write them; the replay orders them by arrival time again
    (directory / "captures-20261123T000000Z-1-0.binpb").write_bytes(b"".join(chunks[1::2]))
    (directory / "captures-20261123T000000Z-2-0.binpb").write_bytes(b"".join(chunks[0::2]))
    return directory


#: Loose latency and degradation limits: three servers and the replayer share two cores here, so those
#: are not what these tests gate on (the unit tests cover the arithmetic of those checks).
STEADY = ["--speed", "50", "--concurrency", "4", "--max-p99-increase-ms", "1000", "--max-degraded-rate", "0.2"]


def replay(log: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--log", str(log), *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_a_candidate_with_another_model_is_flagged_above_the_noise_floor(
    fleet: Fleet, capture_log: Path, tmp_path: Path
) -> None:
    json_path = tmp_path / "report.json"
    code, text, err = replay(
        capture_log,
        "--target",
        fleet.primary.target,
        "--candidate",
        fleet.candidate.target,
        "--secondary",
        fleet.secondary.target,
        *STEADY,
        "--max-rbo-drop",
        "0.05",
        "--report-json",
        str(json_path),
    )
    assert code == 1, text + err
    report: dict[str, Any] = json.loads(json_path.read_text())
    code_json, text_json, _ = replay(
        capture_log,
        "--target",
        fleet.primary.target,
        "--candidate",
        fleet.candidate.target,
        *STEADY,
        "--json",
        "--quiet",
    )
    assert code_json == 1 and json.loads(text_json)["replay"]["captures"] == N_CAPTURES  # --json: JSON on stdout
    assert report["replay"]["captures"] == N_CAPTURES
    assert report["replay"]["captured_status"] == {"INVALID_ARGUMENT": INVALID, "OK": N_CAPTURES - INVALID}
    noise, cand = report["agreement"]["secondary"], report["agreement"]["candidate"]
    # the server is deterministic: the secondary reproduces the primary's rankings
    assert noise["rbo"]["mean"] == pytest.approx(1.0, abs=0.02)
    assert noise["identical_rate"] >= 0.95
    # the candidate's model reorders and replaces items
    assert cand["rbo"]["mean"] < 0.9
    assert cand["rbo"]["mean"] < noise["rbo"]["mean"] - 0.1
    assert cand["new_items"]["mean"] > 0
    assert {"rbo_drop", "overlap_drop"} <= set(report["significant"])
    assert report["noise_floor"]["fields"]["model_version"]["significant"]
    assert report["targets"]["candidate"]["model_versions"] == {"linear-v2": N_CAPTURES - INVALID}
    assert report["targets"]["primary"]["model_versions"] == {"linear-v1": N_CAPTURES - INVALID}
    # the invalid captures fail everywhere: an error rate, but not a new error
    for role in ("primary", "candidate", "secondary"):
        assert report["targets"][role]["errors"].get("INVALID_ARGUMENT") == INVALID
    assert cand["new_error_rate"] == 0.0
    checks = {c["name"]: c for c in report["verdict"]["checks"]}
    assert not checks["max_rbo_drop"]["passed"]
    assert checks["max_error_rate"]["passed"]
    assert "VERDICT  FAIL" in text
    assert "SIGNIFICANT" in text
    assert "replay  sent" in err  # the progress line


def test_the_same_candidate_passes_loose_thresholds(fleet: Fleet, capture_log: Path) -> None:
    code, text, err = replay(
        capture_log,
        "--target",
        fleet.primary.target,
        "--candidate",
        fleet.candidate.target,
        "--secondary",
        fleet.secondary.target,
        *STEADY,
        "--max-rbo-drop",
        "1.0",
        "--min-overlap",
        "0",
        "--quiet",
    )
    assert code == 0, text + err
    assert text.startswith("VERDICT  PASS")
    assert err == ""  # --quiet: no progress line


def test_an_identical_candidate_passes_and_shows_no_ranking_difference(fleet: Fleet, capture_log: Path) -> None:
    code, text, err = replay(
        capture_log, "--target", fleet.primary.target, "--candidate", fleet.secondary.target, *STEADY, "--limit", "60"
    )
    assert code == 0, text + err
    assert "VERDICT  PASS" in text
    assert "no --secondary: noise assumed 0" in text


def test_an_unreachable_target_or_an_empty_log_is_bad_input(fleet: Fleet, capture_log: Path, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    code, _, err = replay(
        capture_log, "--target", fleet.primary.target, "--candidate", dead, "--connect-timeout-s", "0.5"
    )
    assert code == 2
    assert f"candidate {dead}: unreachable" in err
    code, _, err = replay(tmp_path, "--target", fleet.primary.target)
    assert code == 2
    assert "no captured requests" in err
