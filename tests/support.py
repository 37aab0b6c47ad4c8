"""Test support: real Redis processes, tiny bundles with a real ONNX model, free ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from redis import Redis
from redis.exceptions import RedisError

from features.schema import ITEM_STATS, USER_STATS
from features.snapshot import UserSnapshot
from models.bundle import BundleContents, write_bundle
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


def user_snapshot(n: int, dim: int, seed: int = 1) -> UserSnapshot:
    """``n`` users ("user-0", …) with seeded random vectors and stats."""
    rng = np.random.default_rng(seed)
    return UserSnapshot(
        user_ids=[f"user-{i}" for i in range(n)],
        vectors=rng.normal(size=(n, dim)).astype(np.float32),
        stats=rng.random(size=(n, len(USER_STATS))).astype(np.float32),
    )


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
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-server); .ci/run installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(self.size)]
        self.bus_ports = {port: free_port() for port in self.ports}
        try:
            for port in self.ports:
                self.start_node(port, wait=False)
            for port in self.ports:
                self._wait_for_ping(port)
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
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server); .ci/run installs it")
        self.processes[port] = subprocess.Popen(
            [
                binary,
                *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                *("--cluster-port", str(self.bus_ports[port]), "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait:
            self._wait_for_ping(port)

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

    def _wait_for_ping(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with self.client(port) as node:
                    if node.ping():
                        return
            except RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {port}")
