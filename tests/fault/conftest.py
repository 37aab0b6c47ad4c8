"""Fault-injection fixtures: real Redis, the latency proxy, a report collector and end-of-test checks."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from loadtests.fault_report import FaultReport, format_table
from tests.e2e.conftest import ServerProcess, start_server, stop_server
from tests.fault.proxy import LatencyProxy
from tests.support import RedisProcess

REPORTS: list[FaultReport] = []


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


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The value of one sample on the server's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def finish(server: ServerProcess) -> None:
    """Nothing wedged: the server still reports SERVING, then stops cleanly on SIGTERM."""
    assert server.process.poll() is None, f"server died:\n{server.log()}"
    assert health(server) == health_pb2.HealthCheckResponse.SERVING
    stop_server(server)
    assert server.process.returncode == 0, f"exit {server.process.returncode}:\n{server.log()}"
    assert "Traceback" not in server.log(), server.log()


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
