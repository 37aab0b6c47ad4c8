"""A real `encore serve` process on free loopback ports, talking to a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from encore.v1 import ranking_pb2_grpc as pb_grpc
from tests.support import REPO, RedisProcess, free_port

EXPERIMENTS = """
experiments:
  - key: home-model
    surface: home
    coverage: 1.0
    status: running
    variants:
      - {key: control, weight: 0.5, params: {}}
      - {key: v2, weight: 0.5, params: {model_version: linear-v2}}
"""


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path

    @property
    def workdir(self) -> Path:
        return self.log_path.parent

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    bundle: Path, tmp: Path, *extra: str, channel: Callable[[str], grpc.Channel] = grpc.insecure_channel
) -> ServerProcess:
    """``encore serve`` on free ports, returned once its health check says SERVING over ``channel``
    (pass a TLS channel factory for a TLS server); RuntimeError with the log if it exits or stalls."""
    port, metrics_port = free_port(), free_port()
    log_path = tmp / f"server-{port}.log"
    extra = extra if "--exposure-log-dir" in extra else (*extra, "--exposure-log-dir", str(tmp / "exposures"))
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "serve",
        "--bundle",
        str(bundle),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        *extra,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    server = ServerProcess(process, port, metrics_port, log_path)
    deadline = time.monotonic() + 60
    with channel(server.target) as health_channel:
        stub = health_pb2_grpc.HealthStub(health_channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return server
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not become SERVING:\n{server.log()}")


def stop_server(server: ServerProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def redis_for_server() -> Iterator[RedisProcess]:
    redis = RedisProcess()
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture(scope="module")
def server(
    tiny_bundle_path: Path, redis_for_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Serves the tiny bundle on Redis (features loaded at start-up) with one experiment."""
    tmp = tmp_path_factory.mktemp("server")
    experiments = tmp / "experiments.yaml"
    experiments.write_text(EXPERIMENTS)
    proc = start_server(
        tiny_bundle_path, tmp, "--redis-url", redis_for_server.url, "--load-features", "--experiments", str(experiments)
    )
    yield proc
    stop_server(proc)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.RankingServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.RankingServiceStub(channel)
