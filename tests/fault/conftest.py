"""Fault-injection fixtures: real Redis, the latency proxy, a report collector and end-of-test checks."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loadtests.harness import RedisProcess, ServerProcess, scrape_metric, start_server, stop_server
from tests.fault.proxy import LatencyProxy
from tests.fault.report import FaultReport, format_table

REPORTS: list[FaultReport] = []
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ")


class Reporter:
    """Collects one test's report rows and prints them as a table when the test ends."""

    def __init__(self) -> None:
        self.rows: list[FaultReport] = []

    def add(self, report: FaultReport) -> FaultReport:
        self.rows.append(report)
        REPORTS.append(report)
        return report


@pytest.fixture
def reporter(request: pytest.FixtureRequest) -> Iterator[Reporter]:
    reporter = Reporter()
    yield reporter
    if reporter.rows:
        print(f"\n\n{request.node.name}\n{format_table(reporter.rows)}\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("fault injection report")
        terminalreporter.write_line(format_table(REPORTS))


# The stages a fault test does not aim at get more room than their defaults (retrieval 20 ms, scoring
# 25 ms), still inside the surface budgets (Home 80 ms, Now Playing 60 ms): on two shared cores a
# scheduling stall of a few tens of milliseconds must not read as a degraded answer. The Redis
# stage keeps its default 15 ms budget (and RecordEvents its 20 ms Redis timeout): that is the one
# the faults hit.
QUIET_STAGES = "stages: {user_features_ms: 15, retrieval_ms: 45, scoring_ms: 45}\n"


@pytest.fixture
def quiet_config(tmp_path: Path) -> Path:
    """A ``--config`` file with ``QUIET_STAGES``."""
    path = tmp_path / "quiet-stages.yaml"
    path.write_text(QUIET_STAGES)
    return path


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()  # SIGKILL: also ends a SIGSTOPped redis


@pytest.fixture
def proxy(redis: RedisProcess) -> Iterator[LatencyProxy]:
    proxy = LatencyProxy("127.0.0.1", redis.port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def health(server: ServerProcess) -> int:
    with grpc.insecure_channel(server.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


metric = scrape_metric  # the fault tests' name for it


def tracebacks(log: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """Log records (a timestamped line and its continuation lines) holding a traceback, except
    those whose first line contains one of ``allowed``."""
    records: list[list[str]] = []
    for line in log.splitlines():
        if TIMESTAMP.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    return [
        "\n".join(r) for r in records if any("Traceback" in line for line in r) and not any(a in r[0] for a in allowed)
    ]


def finish(server: ServerProcess, *, allowed_tracebacks: tuple[str, ...] = ()) -> None:
    """Nothing wedged: the server still reports SERVING, then stops cleanly on SIGTERM; no unexpected traceback."""
    assert server.process.poll() is None, f"server died:\n{server.log()}"
    assert health(server) == health_pb2.HealthCheckResponse.SERVING
    stop_server(server)
    assert server.process.returncode == 0, f"exit {server.process.returncode}:\n{server.log()}"
    assert tracebacks(server.log(), allowed_tracebacks) == []


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``serve(bundle, *cli_args)`` starts a server; any still running at teardown is stopped."""
    started: list[ServerProcess] = []

    def start(bundle: Path, *args: str) -> ServerProcess:
        server = start_server(bundle, tmp_path, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            stop_server(server)
