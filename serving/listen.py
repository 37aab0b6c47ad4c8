"""Opening the server's listeners: a port that cannot be bound fails start-up with one ``ListenError``
naming the setting, the address and the operating system's reason (gRPC's own error says neither).

The metrics port is a small HTTP server (``serve_http``): ``/metrics`` (the Prometheus registry, as
prometheus_client's own handler serves it), ``/healthz`` (200 while the process answers),
``/readyz`` (200 while ``ready()`` says so, else 503) and 404 for every other path.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

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


def start_metrics_http(
    port: int, host: str, registry: CollectorRegistry, ready: Callable[[], bool] | None = None
) -> int:
    """Serve ``registry`` on ``http://host:port/metrics``, with ``/healthz`` and ``/readyz``, from a
    daemon thread (``serve_http``); returns the port bound."""
    return int(serve_http(port, host, registry, ready).server_port)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow scraper never holds up the process's exit


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


def serve_http(
    port: int, host: str, registry: CollectorRegistry, ready: Callable[[], bool] | None = None
) -> ThreadingHTTPServer:
    """Start the metrics and health HTTP server on ``host:port`` (0 picks a free port) in a daemon
    thread and return it (``shutdown()`` stops it). ``ready`` answers ``/readyz`` (None: ready while
    the process answers, as ``/healthz``); it is called on the server's threads, so it only reads.

    prometheus_client is imported here, not at module import (``--workers`` configures it first).
    """
    from prometheus_client.exposition import MetricsHandler

    class Handler(MetricsHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                super().do_GET()
            elif path == "/healthz":
                self._answer(200, "ok\n")
            elif path == "/readyz":
                serving = _is_ready(ready)
                self._answer(200 if serving else 503, "ready\n" if serving else "not ready\n")
            else:
                self._answer(404, "not found: the paths are /metrics, /healthz and /readyz\n")

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    Handler.registry = registry
    server_class = _HTTPServer6 if ":" in host else _HTTPServer
    try:
        httpd = server_class((host.strip("[]"), port), Handler)
    except OSError as exc:
        raise ListenError(f"metrics_port: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    threading.Thread(target=httpd.serve_forever, name="encore-metrics-http", daemon=True).start()
    return httpd


def _is_ready(ready: Callable[[], bool] | None) -> bool:
    if ready is None:
        return True
    try:
        return bool(ready())
    except Exception:  # a readiness check that fails is a "no", never a 500 with a traceback
        return False


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
