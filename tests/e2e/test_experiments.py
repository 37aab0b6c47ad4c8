"""Experiments end to end: exposure log from a real server, hot reload, the CLI, and a simulation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import ServerProcess, start_server, stop_server
from offline.experiments.outcome_logs import expand_paths, load_outcomes
from offline.experiments.simulation import SimulationConfig, simulate_and_analyze
from serving.experiments.assignment import Assigner
from serving.experiments.config import load_experiments
from tests.support import REPO

LAYERED = """
holdout: {coverage: 0.1}
layers:
  - key: home-ranking
    surface: home
    experiments:
      - key: home-model
        range: [0.0, 0.6]
        coverage: 1.0
        status: running
        variants:
          - {key: control, weight: 0.5}
          - {key: v2, weight: 0.5, params: {model_version: linear-v2}}
      - key: home-diversity
        range: [0.6, 1.0]
        coverage: 1.0
        status: running
        overrides: {qa-user: cap1}
        variants:
          - {key: control, weight: 0.5}
          - {key: cap1, weight: 0.5, params: {diversity_cap: 1}}
"""


@pytest.fixture(scope="module")
def experiments_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("experiments") / "experiments.yaml"
    path.write_text(LAYERED)
    return path


@pytest.fixture(scope="module")
def layered_server(tiny_bundle_path: Path, experiments_file: Path) -> Iterator[ServerProcess]:
    settings = experiments_file.parent / "settings.yaml"
    settings.write_text("experiments_reload_s: 0.2\n")
    server = start_server(
        tiny_bundle_path, experiments_file.parent, "--experiments", str(experiments_file), "--config", str(settings)
    )
    yield server
    stop_server(server)


def rank_home(server: ServerProcess, user: str) -> pb.RankResponse:
    with grpc.insecure_channel(server.target) as channel:
        return pb_grpc.RankingServiceStub(channel).Rank(
            pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME), timeout=5
        )


def read_exposures(directory: Path, expected: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(x) for f in sorted(directory.glob("*.jsonl")) for x in f.read_text().splitlines()]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_assignments_follow_the_layered_config_and_exposures_are_logged_once(
    layered_server: ServerProcess, experiments_file: Path
) -> None:
    assigner = Assigner(load_experiments(experiments_file, known_models={"linear-v1", "linear-v2"}))
    users = [f"user-{i}" for i in range(60)]
    for _ in range(2):  # ranking twice must not log twice
        for user in users:
            response = rank_home(layered_server, user)
            expected = assigner.assign(user, "home")
            assert [(a.experiment, a.variant) for a in response.assignments] == [
                (a.experiment, a.variant) for a in expected.assignments
            ]
            in_layer = [a.experiment for a in expected.assignments if a.experiment.startswith("home-")]
            assert len(in_layer) <= 1  # mutual exclusion inside the layer
    expected_lines = sum(sum(a.exposed for a in assigner.assign(u, "home").assignments) for u in users)
    lines = read_exposures(layered_server.workdir / "exposures", expected_lines)
    assert len(lines) == expected_lines
    assert len({(line["unit_id"], line["experiment"]) for line in lines}) == expected_lines
    by_unit = {(line["unit_id"], line["experiment"]): line["variant"] for line in lines}
    for user in users:
        for a in assigner.assign(user, "home").assignments:
            assert by_unit[(user, a.experiment)] == a.variant


def test_forced_users_get_their_variant_and_are_not_logged(layered_server: ServerProcess) -> None:
    response = rank_home(layered_server, "qa-user")
    assert ("home-diversity", "cap1") in [(a.experiment, a.variant) for a in response.assignments]
    time.sleep(0.3)
    lines = read_exposures(layered_server.workdir / "exposures", 0)
    assert not [line for line in lines if line["unit_id"] == "qa-user" and line["experiment"] == "home-diversity"]


def test_the_experiments_file_reloads_without_restart_and_a_bad_one_is_refused(
    layered_server: ServerProcess, experiments_file: Path
) -> None:
    def assignments(user: str) -> list[tuple[str, str]]:
        return [(a.experiment, a.variant) for a in rank_home(layered_server, user).assignments]

    users = [f"reload-{i}" for i in range(20)]
    assert any(assignments(u) for u in users)
    experiments_file.write_text(LAYERED.replace("status: running", "status: stopped").replace("0.1}", "0.0}"))
    deadline = time.monotonic() + 10
    while any(assignments(u) for u in users) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(assignments(u) for u in users)

    experiments_file.write_text(LAYERED.replace("linear-v2", "no-such-model"))
    deadline = time.monotonic() + 10
    while "experiments reload refused" not in layered_server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "no-such-model" in layered_server.log()
    assert not any(assignments(u) for u in users)  # the previous (stopped) config still serves
    with urllib.request.urlopen(f"http://127.0.0.1:{layered_server.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert 'encore_experiments_reloads_total{outcome="rejected"} 1.0' in text
    assert 'encore_experiments_reloads_total{outcome="applied"} 1.0' in text
    experiments_file.write_text(LAYERED)  # leave the module's file as it started


def encore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_validate_command_lists_every_problem_with_its_location(tmp_path: Path, tiny_bundle_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(LAYERED)
    ok = encore("experiments", "validate", str(good), "--bundle", str(tiny_bundle_path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        LAYERED.replace("range: [0.6, 1.0]", "range: [0.5, 1.0]")
        .replace("weight: 0.5, params: {model_version", "weight: 0.6, params: {model_version")
        .replace("diversity_cap: 1", "diversity_cap: 1, colour: red")
    )
    result = encore("experiments", "validate", str(bad), "--bundle", str(tiny_bundle_path))
    assert result.returncode == 1
    out = result.stdout
    assert "layers[0].experiments[1].range" in out and "overlaps" in out
    assert "layers[0].experiments[0].variants" in out and "sum" in out
    assert "layers[0].experiments[1].variants[1].params: unknown param 'colour'" in out


def test_analyze_command_reads_server_exposures_and_flags_srm_in_json(
    layered_server: ServerProcess, experiments_file: Path, tmp_path: Path
) -> None:
    lines = read_exposures(layered_server.workdir / "exposures", 1)
    units = sorted({str(line["unit_id"]) for line in lines})
    outcomes = tmp_path / "outcomes.jsonl"
    now = int(time.time() * 1000) + 10_000
    outcomes.write_text("".join(json.dumps({"ts_ms": now, "unit_id": u, "metric": "stream"}) + "\n" for u in units))
    result = encore(
        "experiments",
        "analyze",
        "--exposures",
        str(layered_server.workdir / "exposures"),
        "--outcomes",
        str(outcomes),
        "--experiments",
        str(experiments_file),
        "--json",
    )
    assert result.returncode in (0, 3), result.stderr
    report = json.loads(result.stdout)
    assert {e["experiment"] for e in report["experiments"]} >= {"home-model"}


async def test_simulated_experiment_through_the_server_finds_the_better_ranker_and_no_srm(tmp_path: Path) -> None:
    outcome = await simulate_and_analyze(
        SimulationConfig(out_dir=tmp_path, n_users=1000, sessions_per_user=2), progress=lambda _: None
    )
    assert outcome.run.errors == 0
    assert outcome.detected, outcome.verdict + "\n" + outcome.report_text
    result = outcome.report.experiments[0]
    assert not result.srm.flagged
    assert result.units == 1000
    # the outcomes are the server's outcome log (one line per accepted event), not a file the client wrote
    assert not (tmp_path / "outcomes.jsonl").exists()
    assert outcome.run.outcomes.parent == tmp_path and outcome.run.outcomes.is_dir()
    server_files = sorted(outcome.run.outcomes.glob("outcomes-*-*-*.jsonl"))
    assert server_files and expand_paths([outcome.run.outcomes]) == server_files
    outcomes = load_outcomes([outcome.run.outcomes])
    streams = outcomes.metrics.index("stream")
    assert int(np.count_nonzero(outcomes.metric == streams)) == outcome.run.streams > 0
    assert set(outcomes.metrics) == {"stream", "skip"}
    # the pre-period the listeners had before the experiment is CUPED's covariate; it ships on a verdict
    assert result.verdict is not None and result.verdict.label == "ship (treatment)"
    streams_decision = next(d for d in result.decision if d.spec.name == "streams")
    assert streams_decision.inference.variance_reduction > 0.3
    assert result.outcomes_before_exposure > 0
