"""Closed-loop Rank traffic from a background thread, for the tests that change a server under load."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import ServerProcess

LIMIT = 5


class RankLoad:
    """Sends Rank calls until ``stop()``, cycling through ``surfaces`` (every call carries
    ``seed_item_id``, which Now Playing needs), and records every answer's bundle version, its degraded stages as
    ``"<answer number>:<stage>"``, and every failure or short answer in ``errors``."""

    def __init__(
        self, server: ServerProcess, surfaces: tuple[int, ...] = (pb.SURFACE_HOME,), seed_item_id: str = ""
    ) -> None:
        self.versions: list[str] = []
        self.degraded: list[str] = []
        self.errors: list[str] = []
        self._surfaces, self._seed = surfaces, seed_item_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server.target,), daemon=True)
        self._thread.start()

    def _run(self, target: str) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.RankingServiceStub(channel)
            i = 0
            while not self._stop.is_set():
                i += 1
                surface = self._surfaces[i % len(self._surfaces)]
                request = pb.RankRequest(user_id=f"u{i % 40}", surface=surface, seed_item_id=self._seed, limit=LIMIT)
                try:
                    response = stub.Rank(request, timeout=2)
                    if len(response.items) != LIMIT:
                        self.errors.append(f"{len(response.items)} items")
                    self.versions.append(response.bundle_version)
                    self.degraded.extend(f"{len(self.versions)}:{d}" for d in response.degraded)
                except grpc.RpcError as exc:
                    self.errors.append(f"{exc.code().name}: {exc.details()}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` every 50 ms until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
