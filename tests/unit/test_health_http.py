"""The metrics port's HTTP server: /metrics, /healthz, /readyz (following the gRPC health), 404 elsewhere."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry, Counter

from serving.listen import serve_http
from serving.server import HealthServicer, Readiness, mark_serving


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def endpoint() -> Iterator[Callable[[Callable[[], bool] | None], int]]:
    servers = []

    def start(ready: Callable[[], bool] | None) -> int:
        registry = CollectorRegistry()
        Counter("encore_test_things", "things", registry=registry).inc(3)
        servers.append(serve_http(0, "127.0.0.1", registry, ready))
        return int(servers[-1].server_port)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_four_paths(endpoint: Callable[[Callable[[], bool] | None], int]) -> None:
    readiness = Readiness()
    port = endpoint(readiness)
    status, body = get(port, "/metrics")
    assert status == 200 and "encore_test_things_total 3.0" in body
    assert get(port, "/metrics?name[]=encore_test_things_total")[0] == 200
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/readyz") == (503, "not ready\n")
    readiness.set(True)
    assert get(port, "/readyz") == (200, "ready\n")
    for path in ("/", "/metricsz", "/healthz/extra", "/favicon.ico"):
        assert get(port, path)[0] == 404, path


def test_readiness_that_fails_is_not_ready_and_none_means_ready(
    endpoint: Callable[[Callable[[], bool] | None], int],
) -> None:
    def broken() -> bool:
        raise RuntimeError("cannot tell")

    assert get(endpoint(broken), "/readyz")[0] == 503
    assert get(endpoint(None), "/readyz")[0] == 200


def test_a_taken_port_names_the_setting(endpoint: Callable[[Callable[[], bool] | None], int]) -> None:
    from serving.errors import ListenError

    port = endpoint(None)
    with pytest.raises(ListenError, match=f"metrics_port: cannot listen on 127.0.0.1:{port}"):
        serve_http(port, "127.0.0.1", CollectorRegistry())


async def test_readiness_follows_the_grpc_health_status() -> None:
    health = HealthServicer()
    published: list[bool] = []
    readiness = Readiness(published.append)
    request = health_pb2.HealthCheckRequest(service="")

    async def grpc_status() -> int:
        return int((await health.Check(request, None)).status)

    await mark_serving(health, True, readiness)
    assert readiness() and await grpc_status() == health_pb2.HealthCheckResponse.SERVING
    await mark_serving(health, False, readiness)
    assert not readiness() and await grpc_status() == health_pb2.HealthCheckResponse.NOT_SERVING
    assert published == [True, False]
