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
