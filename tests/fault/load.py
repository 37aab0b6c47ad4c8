"""Steady background traffic against a real server, recording every answer as a ``Sample``.

Three paced threads (one channel each, 1 s deadline): Rank on Home, Rank on Now Playing, and
RecordEvents (one PLAY for a fresh user per call, so what was acknowledged can be checked in the
store afterwards). Pacing never bursts to catch up: a slow answer just lowers the rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from tests.fault.report import Sample, recovery_time

N_USERS = 40  # u0..u39 are in the tiny bundle's user snapshot
N_ITEMS = 400  # i00000..i00399


class Load:
    def __init__(
        self, target: str, *, rate: float = 150.0, deadline_s: float = 1.0, events: bool = True, tag: str = "load"
    ) -> None:
        self.target = target
        self.deadline_s = deadline_s
        self.tag = tag
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        streams: list[tuple[str, float]] = [("Rank/home", 0.4), ("Rank/now_playing", 0.4)]
        if events:
            streams.append(("RecordEvents", 0.2))
        share = sum(s for _, s in streams)
        self._threads = [
            threading.Thread(target=self._run, args=(method, rate * s / share), name=f"load-{method}", daemon=True)
            for method, s in streams
        ]

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        return self.samples()

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def count(self) -> int:
        with self._lock:
            return len(self._samples)

    def wait_for_samples(self, n: int, timeout_s: float = 10.0) -> None:
        """Until ``n`` more answers have come back."""
        goal = self.count() + n
        assert wait_until(lambda: self.count() >= goal, timeout_s), f"load stalled below {goal} answers"

    def wait_recovered(self, fault_end: float, *, settle_s: float = 0.5, timeout_s: float = 10.0) -> bool:
        """Until every answer has been healthy for ``settle_s`` after the fault ended (False on timeout)."""

        def settled() -> bool:
            samples = self.samples()
            recovery = recovery_time(samples, fault_end)
            latest = max((s.done for s in samples), default=0.0)
            return recovery is not None and latest - (fault_end + recovery) >= settle_s

        return wait_until(settled, timeout_s)

    def _run(self, method: str, rate: float) -> None:
        interval = 1.0 / rate
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.RankingServiceStub(channel)
            n = 0
            next_at = time.monotonic()
            while not self._stop.is_set():
                n += 1
                sample = self._call(stub, method, n)
                with self._lock:
                    self._samples.append(sample)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()

    def _call(self, stub: pb_grpc.RankingServiceStub, method: str, n: int) -> Sample:
        user = f"u{n % N_USERS}"
        item = f"i{(n * 7) % N_ITEMS:05d}"
        sent = time.monotonic()
        try:
            if method == "RecordEvents":
                user = f"{self.tag}-ev-{n}"
                event = pb.Event(type=pb.EVENT_TYPE_PLAY, item_id=item, timestamp_ms=n)
                stub.RecordEvents(pb.RecordEventsRequest(user_id=user, events=[event]), timeout=self.deadline_s)
                return Sample(method, sent, time.monotonic(), "OK", (), user, item)
            surface = pb.SURFACE_HOME if method == "Rank/home" else pb.SURFACE_NOW_PLAYING
            seed = item if surface == pb.SURFACE_NOW_PLAYING else ""
            request = pb.RankRequest(user_id=user, surface=surface, seed_item_id=seed, limit=10)
            response = stub.Rank(request, timeout=self.deadline_s)
            return Sample(method, sent, time.monotonic(), "OK", tuple(response.degraded), user, item)
        except grpc.RpcError as exc:
            return Sample(method, sent, time.monotonic(), exc.code().name, (), user, item)


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()
