"""Opening the server's listeners: a port that cannot be bound fails start-up with one ``ListenError``
naming the setting, the address and the operating system's reason (gRPC's own error says neither)."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

import grpc

from serving.errors import ListenError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def add_port(
    server: grpc.aio.Server,
    host: str,
    port: int,
    *,
    setting: str,
    credentials: grpc.ServerCredentials | None = None,
    reuse_port: bool = False,
) -> int:
    """Bind ``server`` to ``host:port`` (0 picks a free port) and return the port bound.

    A taken port on an IP address is found before gRPC tries (gRPC would also log its own error).
    """
    address = f"{host}:{port}"
    if port and _is_ip(host):
        check_can_listen(host, port, setting=setting, reuse_port=reuse_port)
    try:
        bound = (
            server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
        )
    except RuntimeError:  # grpc.aio: "Failed to bind to address ..."
        bound = 0
    if bound == 0:
        raise ListenError(f"{setting}: cannot listen on {address}: {bind_problem(host, port)}")
    return bound


def check_can_listen(host: str, port: int, *, setting: str, reuse_port: bool = False) -> None:
    """Raise ``ListenError`` now if ``host:port`` cannot be bound (before forking processes that would)."""
    problem = _bind_error(host, port, reuse_port=reuse_port)
    if problem is not None:
        raise ListenError(f"{setting}: cannot listen on {host}:{port}: {problem}")


def bind_problem(host: str, port: int) -> str:
    """Why ``host:port`` cannot be bound, as the operating system says it."""
    return _bind_error(host, port) or "gRPC could not bind it (GRPC_VERBOSITY=debug shows why)"


def start_metrics_http(port: int, host: str, registry: CollectorRegistry) -> int:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread; returns the port bound.

    prometheus_client is imported here, not at module import (``--workers`` configures it first).
    """
    from prometheus_client import start_http_server

    try:
        httpd, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ListenError(f"metrics_port: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return int(httpd.server_port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _bind_error(host: str, port: int, *, reuse_port: bool = False) -> str | None:
    bare = host.strip("[]")
    try:
        with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and http.server do
            if reuse_port:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind((bare, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
