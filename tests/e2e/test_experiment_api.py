"""The experimentation API end to end: `encore experiments serve` on real Redis, two ranking
workers following the store, the CLI as the client; refusals carry the right status codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from encore.v1 import experiments_pb2 as xpb
from encore.v1 import experiments_pb2_grpc as xpb_grpc
from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import (
    REPO,
    RedisProcess,
    ServerProcess,
    free_port,
    scrape_metric,
    start_server,
    stop_process,
    stop_server,
)

TOKEN = "t" * 24
DEADLINE_S = 60.0


class Fleet(NamedTuple):
    api: str
    ranking: ServerProcess
    redis: RedisProcess
    env: dict[str, str]


def wait_for(condition: Any, what: str) -> None:
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {DEADLINE_S:g} s: {what}")


def healthy(target: str) -> bool:
    try:
        with grpc.insecure_channel(target) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


@pytest.fixture(scope="module")
def fleet(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("experiment-api")
    redis = RedisProcess()
    redis.start()
    env = {**os.environ, "ENCORE_EXPERIMENTS_TOKEN": TOKEN}
    port = free_port()
    api_log = (tmp / "api.log").open("wb")
    api = subprocess.Popen(
        [
            *(sys.executable, "-m", "cli", "experiments", "serve", "--store", redis.url),
            *("--bundle", str(tiny_bundle_path), "--port", str(port), "--users-per-day", "1000000"),
        ],
        cwd=REPO,
        env=env,
        stdout=api_log,
        stderr=subprocess.STDOUT,
    )
    ranking = start_server(
        tiny_bundle_path,
        tmp,
        *("--workers", "2", "--redis-url", redis.url, "--load-features", "--experiments-store", redis.url),
        new_session=True,
    )
    try:
        wait_for(lambda: healthy(f"127.0.0.1:{port}"), "the experiments API serving")
        yield Fleet(f"127.0.0.1:{port}", ranking, redis, env)
    finally:
        stop_server(ranking)
        stop_process(api)
        redis.stop()


def stub(fleet: Fleet) -> tuple[xpb_grpc.ExperimentServiceStub, Any, grpc.Channel]:
    ch = grpc.insecure_channel(fleet.api)
    return xpb_grpc.ExperimentServiceStub(ch), (("authorization", f"Bearer {TOKEN}"),), ch


def cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "experiments", *args, "--target", fleet.api],
        cwd=REPO,
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def revision_served(fleet: Fleet) -> float:
    return scrape_metric(fleet.ranking, "encore_experiments_revision")


def assigned(fleet: Fleet, key: str, users: int = 40) -> int:
    count = 0
    for u in range(users):
        with grpc.insecure_channel(fleet.ranking.target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            response = pb_grpc.RankingServiceStub(ch).Rank(
                pb.RankRequest(user_id=f"u{u}", surface=pb.SURFACE_HOME, limit=5), timeout=10
            )
        count += any(a.experiment == key for a in response.assignments)
    return count


INTENT = ["--surface", "home", "--variant", "control", "--variant", 'cap3={"diversity_cap": 3}']
INTENT += ["--metric", "stream", "--mde", "0.05", "--guardrail", "skip", "--max-days", "14"]


def test_plan_create_start_ramp_stop_through_the_cli_and_the_fleet_follows(fleet: Fleet) -> None:
    planned = cli(fleet, "plan", "cap3", *INTENT, "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["powered"] and plan["layer"] == "home-experiments" and plan["weights"] == [0.5, 0.5]
    created = cli(fleet, "create", "cap3", *INTENT, "--author", "alice", "--reason", "cap 3 on home")
    assert created.returncode == 0 and "cap3 created as a draft" in created.stdout, created.stderr
    started = cli(fleet, "start", "cap3", "--author", "alice", "--reason", "go")
    assert started.returncode == 0 and "cap3 is running" in started.stdout, started.stderr
    head = int(started.stdout.split()[1].rstrip(":"))
    wait_for(lambda: revision_served(fleet) >= head, f"both workers serving revision {head}")
    assert assigned(fleet, "cap3") > 0
    stopped = cli(fleet, "stop", "cap3", "--author", "alice", "--reason", "done")
    assert stopped.returncode == 0, stopped.stderr
    refused = cli(fleet, "ramp", "cap3", "0.5", "--author", "bob", "--reason", "more")
    assert refused.returncode == 1
    assert refused.stderr.startswith("FAILED_PRECONDITION: no-ramp-after-stop: 'cap3' is stopped")
    log = cli(fleet, "history", "--json")
    reasons = [r["reason"] for r in json.loads(log.stdout)["revisions"]]
    assert reasons[:3] == ["done", "go", "cap 3 on home"]


def test_concurrent_conflicting_changes_one_wins_the_other_is_aborted(fleet: Fleet) -> None:
    api, auth, ch = stub(fleet)
    with ch:
        definition = {
            "key": "race",
            "surface": "home",
            "coverage": 0.1,
            "range": [0.9, 1.0],
            "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
            "metrics": {"primary": "stream", "guardrails": ["skip"], "users_per_arm": 10, "max_days": 14},
        }
        made = api.Create(
            xpb.CreateRequest(
                audit=xpb.Audit(author="t", reason="race"),
                definition_json=json.dumps(definition),
                layer="home-experiments",
            ),
            metadata=auth,
            timeout=30,
        )

        def ramp(coverage: float) -> str:
            try:
                api.Ramp(
                    xpb.RampRequest(
                        key="race",
                        coverage=coverage,
                        audit=xpb.Audit(author="t", reason="r", base_revision=made.revision),
                    ),
                    metadata=auth,
                    timeout=30,
                )
                return "OK"
            except grpc.RpcError as exc:
                return str(exc.code().name)

        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(ramp, [0.2, 0.3]))
        assert outcomes == ["ABORTED", "OK"]
        view = api.Get(xpb.GetRequest(key="race"), metadata=auth, timeout=30)
        assert view.revision == made.revision + 1 and view.coverage in (0.2, 0.3)  # nothing half-applied


def test_validate_passes_a_definition_through_the_gate(fleet: Fleet, tmp_path: Path) -> None:
    definition = tmp_path / "exp.yaml"
    definition.write_text(
        "key: gate-check\nsurface: home\ncoverage: 1.0\nrange: [0.8, 0.9]\n"
        "variants: [{key: a, weight: 0.5}, {key: b, weight: 0.6}]\n"
    )
    checked = cli(fleet, "validate", "--definition", str(definition), "--layer", "home-experiments")
    assert checked.returncode == 1, checked.stderr
    assert "weights must sum to 1, got 1.1" in checked.stdout and "gate-check: metrics: required" in checked.stdout


def test_the_gate_and_the_token_refuse_with_their_codes(fleet: Fleet) -> None:
    api, auth, ch = stub(fleet)
    with ch:
        with pytest.raises(grpc.RpcError) as unauthenticated:
            api.List(xpb.ListRequest(), metadata=(("authorization", "Bearer wrong-token-123456"),), timeout=30)
        assert unauthenticated.value.code() is grpc.StatusCode.UNAUTHENTICATED
        bad = {"key": "bad", "surface": "home", "coverage": 1.0, "variants": [{"key": "a", "weight": 1.0}]}
        with pytest.raises(grpc.RpcError) as invalid:
            api.Create(
                xpb.CreateRequest(audit=xpb.Audit(author="t", reason="x"), definition_json=json.dumps(bad)),
                metadata=auth,
                timeout=30,
            )
        assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        details = invalid.value.details() or ""
        assert "variants" in details and "bad: metrics: required" in details, details
