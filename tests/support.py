"""Test support: real Redis processes, tiny bundles with a real ONNX model, free ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from features.schema import ITEM_STATS, USER_STATS
from models.bundle import BundleContents, UserSnapshot, write_bundle
from models.linear_ranker import linear_ranker

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "hetrec2011-lastfm-2k"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProcess:
    """A real ``redis-server`` on a free loopback port, with no persistence."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server); .ci/run installs it")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def tiny_bundle(parent: Path, *, n_items: int = 400, n_users: int = 50, dim: int = 8, seed: int = 0) -> Path:
    """A small random bundle: 4 tracks per artist, two linear rankers ("linear-v1", "linear-v2")."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    popularity_counts = rng.zipf(1.5, size=n_items).astype(np.float32)
    contents = BundleContents(
        version=f"tiny-{seed}",
        item_ids=[f"i{i:05d}" for i in range(n_items)],
        artist_ids=[f"a{i // 4:04d}" for i in range(n_items)],
        item_names=[f"Artist {i // 4} – Track {i % 4}" for i in range(n_items)],
        item_vectors=vectors,
        item_stats=np.stack([np.log1p(popularity_counts)] * len(ITEM_STATS), axis=1).astype(np.float32),
        popularity=np.argsort(-popularity_counts, kind="stable").astype(np.int64),
        models={
            "linear-v1": linear_ranker({"retrieval_score": 1.0}),
            "linear-v2": linear_ranker({"item_popularity_log": 1.0}),
        },
        default_model="linear-v1",
        users=UserSnapshot(
            user_ids=[f"u{u}" for u in range(n_users)],
            vectors=rng.normal(size=(n_users, dim)).astype(np.float32),
            stats=np.ones((n_users, len(USER_STATS)), dtype=np.float32),
        ),
        dataset={"name": "tiny-random"},
    )
    return write_bundle(contents, parent / contents.version)


@dataclass
class RedisClusterProcess:
    """A real 3-primary Redis Cluster (no replicas, no persistence) on free loopback ports.

    ``redis-cli --cluster create`` assigns the 16384 slots evenly; ``start`` returns once every
    node reports ``cluster_state:ok``. Each node's cluster-bus port is chosen explicitly (the
    default, port + 10000, can fall outside the port range or collide).
    """

    workdir: Path
    size: int = 3
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL listing every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server/redis-cli are not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(self.size)]
        try:
            for port in self.ports:
                self._spawn(server, port)
            for port in self.ports:
                _wait_for_ping(port)
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
                + ["--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=30,
            )
            deadline = time.monotonic() + 15
            while not all(self.cluster_state(p) == "ok" for p in self.ports):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis cluster on ports {self.ports} did not reach cluster_state:ok")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, server: str, port: int) -> None:
        self.processes[port] = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--cluster-enabled", "yes", "--cluster-config-file", str(self.workdir / f"nodes-{port}.conf")]
            + ["--cluster-port", str(free_port()), "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def cluster_state(self, port: int) -> str:
        """``cluster_state`` from ``CLUSTER INFO`` on one node ("ok", "fail", or "down" if unreachable)."""
        try:
            info = _command(port, b"CLUSTER", b"INFO").decode()
        except OSError:
            return "down"
        for line in info.splitlines():
            if line.startswith("cluster_state:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    def flushall(self) -> None:
        """Empty every live node (tests share one cluster per module)."""
        for port in self.processes:
            _command(port, b"FLUSHALL")

    def kill_node(self, port: int) -> None:
        """Kill one node (SIGKILL): its slots stay assigned to it, so its keys become unreachable."""
        process = self.processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill_node(port)


def _command(port: int, *args: bytes, timeout: float = 1.0) -> bytes:
    """Send one command in RESP and return the raw reply payload (a bulk string or a status line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        reply = b""
        while b"\r\n" not in reply or (reply.startswith(b"$") and not _bulk_complete(reply)):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    if reply.startswith(b"-"):
        raise OSError(f"redis error on port {port}: {reply[1:].strip().decode(errors='replace')}")
    if reply.startswith(b"$"):
        header, _, body = reply.partition(b"\r\n")
        return body[: int(header[1:])]
    return reply[1:].rstrip(b"\r\n")


def _bulk_complete(reply: bytes) -> bool:
    header, _, body = reply.partition(b"\r\n")
    return len(body) >= int(header[1:]) + 2


def _wait_for_ping(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if _command(port, b"PING", timeout=0.2) == b"PONG":
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on port {port}")
