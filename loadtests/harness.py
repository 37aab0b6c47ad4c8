"""The one launcher for throwaway processes: free ports, ``redis-server`` and ``encore serve``.

Used by the benchmark (``loadtests.bench``), the locust runner (a free port) and every test layer,
so each process is started, waited for and stopped the same way everywhere:

- ``free_port()``: a free loopback TCP port (bound and released; the caller binds it next).
- ``RedisProcess``: one ``redis-server`` on a free loopback port, no persistence; ``start`` returns
  once it answers ``PING``, ``stop`` SIGKILLs it (which also ends a SIGSTOPped server).
- ``RedisClusterProcess``: a Redis Cluster of N primaries on free ports, joined with
  ``redis-cli --cluster create``; ``start`` returns once every node reports ``cluster_state:ok``.
- ``start_server`` / ``stop_server``: ``python -m cli serve`` on free ports (gRPC and
  metrics), its output in a log file; ``start_server`` returns once the gRPC health check says
  SERVING and raises ``RuntimeError`` with the whole log if the process exits or stalls first.
  ``start_reference_server`` does the same for the benchmark's reference (``loadtests.reference``).

Every wait polls a condition (a PING, a health check, the process's exit) against a generous
deadline; nothing sleeps for a fixed time and hopes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis import Redis
from redis.exceptions import RedisError

REPO = Path(__file__).resolve().parents[1]

#: How long a fresh redis-server may take to answer PING, and a server to report SERVING.
REDIS_START_TIMEOUT_S = 10.0
SERVER_START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (free when this returns; the caller binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], grace_s: float = 15.0, *, group: bool = False) -> None:
    """SIGTERM (the process group when it was started as one), then SIGKILL after ``grace_s``."""
    if process.poll() is not None:
        return
    sender = (lambda sig: os.killpg(process.pid, sig)) if group else process.send_signal
    with contextlib.suppress(ProcessLookupError):
        sender(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            sender(signal.SIGKILL)
        process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# Redis


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server); .ci/run installs it")
    return found


def redis_server_command(port: int, *extra: str) -> list[str]:
    """``redis-server`` on ``127.0.0.1:port`` with persistence off (no RDB, no AOF), plus ``extra``."""
    return [
        *(_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *extra,
    ]


def _wait_for_ping(port: int, process: subprocess.Popen[bytes], timeout_s: float = REDIS_START_TIMEOUT_S) -> None:
    """Until ``PING`` on ``port`` answers ``+PONG``; RuntimeError when ``process`` exits or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited with {process.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on port {port}")


@dataclass
class RedisProcess:
    """A real ``redis-server`` on a free loopback port, with no persistence."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            redis_server_command(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_for_ping(self.port, self.process)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGKILL (no persistence, nothing to flush; also ends a SIGSTOPped server)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class RedisClusterProcess:
    """A real Redis Cluster of ``size`` primaries (no replicas, no persistence) on free loopback ports.

    ``start`` launches the nodes, joins them with ``redis-cli --cluster create`` (slots split
    evenly) and returns once every node reports ``cluster_state:ok``. Each node's cluster-bus
    port is chosen explicitly: the default (port + 10000) can fall outside the port range.
    """

    workdir: Path
    size: int = 3
    ports: list[int] = field(default_factory=list)
    bus_ports: dict[int, int] = field(default_factory=dict)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL listing every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        cli = _binary("redis-cli")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(self.size)]
        self.bus_ports = {port: free_port() for port in self.ports}
        try:
            for port in self.ports:
                self.start_node(port, wait=False)
            for port in self.ports:
                _wait_for_ping(port, self.processes[port])
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=30,
            )
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise

    def start_node(self, port: int, *, wait: bool = True) -> None:
        """(Re)start one node; a restarted node rejoins from its nodes-<port>.conf with its slots."""
        self.processes[port] = subprocess.Popen(
            redis_server_command(
                port,
                *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                *("--cluster-port", str(self.bus_ports[port]), "--dir", str(self.workdir)),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait:
            _wait_for_ping(port, self.processes[port])

    def kill_node(self, port: int) -> None:
        """SIGKILL one node: its slots stay assigned to it, so keys in them become unreachable."""
        process = self.processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill_node(port)

    def client(self, port: int, password: str | None = None) -> Redis:
        """A plain (non-cluster) client on one node, for inspecting what that node holds."""
        return Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1.0, socket_connect_timeout=1.0)

    def cluster_state(self, port: int) -> str:
        """``cluster_state`` from ``CLUSTER INFO`` on one node ("ok", "fail"; "down" if unreachable)."""
        try:
            with self.client(port) as node:
                return str(node.cluster("info")["cluster_state"])
        except RedisError:
            return "down"

    def wait_until_ok(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(self.cluster_state(p) == "ok" for p in self.ports):
            if time.monotonic() > deadline:
                states = {p: self.cluster_state(p) for p in self.ports}
                raise RuntimeError(f"redis cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.05)

    def keyslot(self, key: str) -> int:
        """``CLUSTER KEYSLOT key``, asked of a live node."""
        with self.client(next(iter(self.processes))) as node:
            return int(node.cluster("keyslot", key))

    def node_for_key(self, key: str) -> int:
        """Port of the primary serving ``key``'s slot, from ``CLUSTER SLOTS`` on a live node."""
        slot = self.keyslot(key)
        with self.client(next(iter(self.processes))) as node:
            for low, high, primary, *_ in node.cluster("slots"):
                if low <= slot <= high:
                    return int(primary[1])
        raise LookupError(f"slot {slot} of {key!r} is not served by any node")

    def flushall(self) -> None:
        """Empty every node (tests share one cluster per module)."""
        for port in self.processes:
            with self.client(port) as node:
                node.flushall()


# ---------------------------------------------------------------------------------------------
# encore serve


@dataclass
class ServerProcess:
    """A running ``encore serve``: its process, ports and log file."""

    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path
    group: bool = False  # started in its own session: stopped as a process group

    @property
    def workdir(self) -> Path:
        return self.log_path.parent

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def scrape_metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The value of one sample on ``server``'s /metrics endpoint whose labels include ``labels``
    (0 when absent; with ``--workers``, the parent's aggregate)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def start_server(
    bundle: Path,
    workdir: Path,
    *extra: str,
    channel: Callable[[str], grpc.Channel] = grpc.insecure_channel,
    log_path: Path | None = None,
    timeout_s: float = SERVER_START_TIMEOUT_S,
    cwd: Path | None = REPO,
    new_session: bool = False,
) -> ServerProcess:
    """``encore serve --bundle bundle *extra`` on free ports, returned once its health check says
    SERVING over ``channel`` (pass a TLS channel factory for a TLS server).

    Exposures go to ``workdir/exposures`` unless ``extra`` names ``--exposure-log-dir`` (outcomes
    likewise to ``workdir/outcomes``, ``--outcome-log-dir``); output to
    ``log_path`` (default ``workdir/server-<port>.log``). ``new_session`` starts it as its own
    process group, so ``stop_server`` also ends its worker processes. RuntimeError with the log
    if it exits or is not SERVING within ``timeout_s``.
    """
    port, metrics_port = free_port(), free_port()
    log_path = log_path if log_path is not None else workdir / f"server-{port}.log"
    extra = extra if "--exposure-log-dir" in extra else (*extra, "--exposure-log-dir", str(workdir / "exposures"))
    extra = extra if "--outcome-log-dir" in extra else (*extra, "--outcome-log-dir", str(workdir / "outcomes"))
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
    return _launch(
        cmd, port, metrics_port, log_path, channel=channel, timeout_s=timeout_s, cwd=cwd, new_session=new_session
    )


def start_reference_server(
    bundle: Path,
    redis_url: str,
    workdir: Path,
    *extra: str,
    log_path: Path | None = None,
    timeout_s: float = SERVER_START_TIMEOUT_S,
    cwd: Path | None = REPO,
    new_session: bool = False,
) -> ServerProcess:
    """``python -m loadtests.reference --bundle bundle --redis-url redis_url *extra`` (the benchmark's
    straight-line reference) on a free port, returned once its health check says SERVING; output to
    ``log_path`` (default ``workdir/reference-<port>.log``); ``metrics_port`` is 0 (it has none)."""
    port = free_port()
    log_path = log_path if log_path is not None else workdir / f"reference-{port}.log"
    cmd = [sys.executable, "-m", "loadtests.reference", "--bundle", str(bundle), "--redis-url", redis_url]
    cmd += ["--host", "127.0.0.1", "--port", str(port), *extra]
    return _launch(cmd, port, 0, log_path, timeout_s=timeout_s, cwd=cwd, new_session=new_session)


def _launch(
    cmd: list[str],
    port: int,
    metrics_port: int,
    log_path: Path,
    *,
    channel: Callable[[str], grpc.Channel] = grpc.insecure_channel,
    timeout_s: float,
    cwd: Path | None,
    new_session: bool,
) -> ServerProcess:
    """Start ``cmd`` with its output in ``log_path``; return it once SERVING (stopped and re-raised if not)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=new_session
        )
    server = ServerProcess(process, port, metrics_port, log_path, group=new_session)
    try:
        wait_serving(server, channel=channel, timeout_s=timeout_s)
    except BaseException:
        stop_process(process, grace_s=0, group=new_session)
        raise
    return server


def wait_serving(
    server: ServerProcess,
    *,
    channel: Callable[[str], grpc.Channel] = grpc.insecure_channel,
    timeout_s: float = SERVER_START_TIMEOUT_S,
) -> None:
    """Until the gRPC health check says SERVING; RuntimeError (with the log) if it exits or stalls."""
    deadline = time.monotonic() + timeout_s
    with channel(server.target) as health_channel:
        stub = health_pb2_grpc.HealthStub(health_channel)
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"server did not become SERVING within {timeout_s:g} s:\n{server.log()}")


def stop_server(server: ServerProcess, grace_s: float = 15.0) -> None:
    """SIGTERM (the whole group when started with ``new_session``), SIGKILL after ``grace_s``."""
    stop_process(server.process, grace_s, group=server.group)
