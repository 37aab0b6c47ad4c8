"""Redis faults under steady load: killed and restarted, paused (SIGSTOP), slow (a latency proxy).

Rank must never fail — only its ``user_features`` stage degrades while Redis is gone or slow (another
stage at most now and then, when CPU noise stalls the server) —
RecordEvents answers UNAVAILABLE (never anything else), answers are healthy again soon after the
fault ends, every acknowledged event is in Redis, and the server ends SERVING and stops cleanly.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from redis import Redis

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from features.keys import plays_key
from loadtests.harness import RedisProcess, ServerProcess
from tests.fault.conftest import Reporter, finish
from tests.fault.load import Load
from tests.fault.proxy import LatencyProxy
from tests.fault.report import FaultReport, Sample, summarise

Serve = Callable[..., ServerProcess]
RECOVERY_BOUND_S = 10.0  # a sanity bound, not a latency target
CLEAN_WINDOW_TRIES = 20  # seconds tried at most; the first clean one ends it
LEAK_SHARE = 0.02  # answers that may degrade in a stage other than user_features (CPU noise)


def clean_window(load: Load, seconds: float = 1.0) -> bool:
    """Whether every answer sent and received within the next ``seconds`` is healthy."""
    start = time.monotonic()
    time.sleep(seconds)
    end = time.monotonic()
    window = [s for s in load.samples() if start <= s.sent and s.done <= end]
    return bool(window) and all(s.healthy for s in window)


def probe(server: ServerProcess) -> dict[str, list[str]]:
    """Home answers for ten known users (deterministic while their features do not change)."""
    answers = {}
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for n in range(10):
            reply = stub.Rank(pb.RankRequest(user_id=f"u{n}", surface=pb.SURFACE_HOME, limit=10), timeout=5)
            assert list(reply.degraded) == [], reply.degraded
            answers[f"u{n}"] = [item.item_id for item in reply.items]
    return answers


def check_redis_fault(
    samples: Sequence[Sample], report: FaultReport, fault_start: float, fault_end: float, *, grace_s: float = 0.1
) -> None:
    ranks = [s for s in samples if s.method.startswith("Rank")]
    events = [s for s in samples if s.method == "RecordEvents"]
    assert ranks and events
    assert [s for s in ranks if not s.ok] == [], "Rank must degrade, never fail"
    # Only user_features reads Redis. Another stage can miss its budget for a moment when CPU noise
    # on the two shared cores stalls the server (seen under stress-ng: one scoring miss in ~350
    # answers); a fault leaking into other stages would show in many answers, not a few.
    leaked = [s for s in ranks if set(s.degraded) - {"user_features"}]
    assert len(leaked) <= max(2, LEAK_SHARE * len(ranks)), f"{len(leaked)} of {len(ranks)}: {leaked[:3]}"
    during = [s for s in ranks if s.sent >= fault_start + grace_s and s.done <= fault_end]
    assert during, "no Rank answer during the fault"
    bad = [
        (round(s.sent - fault_start, 3), round(s.done - fault_start, 3), s)
        for s in during
        if "user_features" not in s.degraded
    ]
    assert bad == [], "answers during the fault must say degraded"
    assert {s.code for s in events} <= {"OK", "UNAVAILABLE"}
    assert any(s.code == "UNAVAILABLE" for s in events if fault_start <= s.sent <= fault_end)
    assert report.recovery_s is not None, "answers never became healthy again"
    assert report.recovery_s < RECOVERY_BOUND_S


def assert_acknowledged_events_stored(samples: Sequence[Sample], redis: RedisProcess, since: float = 0.0) -> int:
    """Every RecordEvents answered OK (sent after ``since``) is in Redis: nothing acknowledged was lost."""
    acked = [s for s in samples if s.method == "RecordEvents" and s.ok and s.sent >= since]
    assert acked
    with Redis(host="127.0.0.1", port=redis.port, socket_timeout=5) as client:
        pipe = client.pipeline(transaction=False)
        for s in acked:
            pipe.lrange(plays_key(s.user_id), 0, -1)
        stored = pipe.execute()
    missing = [s.user_id for s, plays in zip(acked, stored, strict=True) if s.item_id.encode() not in plays]
    assert missing == [], f"{len(missing)} acknowledged events are not in Redis"
    return len(acked)


def test_redis_killed_and_restarted_during_load(
    tiny_bundle_path: Path, redis: RedisProcess, serve: Serve, reporter: Reporter, quiet_config: Path
) -> None:
    server = serve(tiny_bundle_path, "--redis-url", redis.url, "--load-features", "--config", str(quiet_config))
    with Load(server.target, tag="kill") as load:
        load.wait_for_samples(100)
        fault_start = time.monotonic()
        redis.stop()  # SIGKILL
        time.sleep(2.0)
        fault_end = time.monotonic()  # recovery includes redis-server's own start-up
        redis.start()  # same port, empty: users are cold now, but nothing is degraded
        load.wait_recovered(fault_end)
    samples = load.samples()
    report = reporter.add(summarise("redis killed 2 s, restarted", samples, fault_end, note="restarted empty"))
    check_redis_fault(samples, report, fault_start, fault_end)
    assert_acknowledged_events_stored(samples, redis, since=fault_end)
    finish(server)


def test_redis_paused_with_sigstop_during_load(
    tiny_bundle_path: Path, redis: RedisProcess, serve: Serve, reporter: Reporter, quiet_config: Path
) -> None:
    server = serve(tiny_bundle_path, "--redis-url", redis.url, "--load-features", "--config", str(quiet_config))
    before = probe(server)
    assert redis.process is not None
    with Load(server.target, tag="pause") as load:
        load.wait_for_samples(100)
        fault_start = time.monotonic()
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            time.sleep(2.0)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        fault_end = time.monotonic()
        load.wait_recovered(fault_end)
    samples = load.samples()
    report = reporter.add(summarise("redis SIGSTOP 2 s, SIGCONT", samples, fault_end))
    check_redis_fault(samples, report, fault_start, fault_end)
    # within the surface budget (Home 80 ms, Now Playing 60 ms) plus scheduling noise on a shared
    # machine, far from the 1 s client deadline: nothing waited for the stopped Redis
    assert max(s.latency_ms for s in samples if s.method.startswith("Rank")) < 500
    assert_acknowledged_events_stored(samples, redis)
    assert probe(server) == before, "after the pause users get their own features again"
    finish(server)


def test_slow_redis_behind_a_latency_proxy(
    tiny_bundle_path: Path,
    proxy: LatencyProxy,
    redis: RedisProcess,
    serve: Serve,
    reporter: Reporter,
    quiet_config: Path,
) -> None:
    server = serve(tiny_bundle_path, "--redis-url", proxy.url, "--load-features", "--config", str(quiet_config))
    before = probe(server)
    with Load(server.target, tag="slow") as load:
        load.wait_for_samples(60)
        slow_start = time.monotonic()
        proxy.set_latency(0.050)  # +50 ms per reply: over the 15 ms user_features budget
        time.sleep(1.5)
        proxy.set_latency(0.0)
        slow_end = time.monotonic()
        assert load.wait_recovered(slow_end)
        pause_start = time.monotonic()
        proxy.pause()  # Redis is fine, the network holds every byte
        time.sleep(1.0)
        proxy.resume()
        pause_end = time.monotonic()
        assert load.wait_recovered(pause_end)
        proxy.set_latency(0.005)  # +5 ms: under the budget
        small_start = time.monotonic()
        time.sleep(0.5)  # pooled connections settle
        clean = next((n for n in range(1, CLEAN_WINDOW_TRIES + 1) if clean_window(load)), None)
        small_end = time.monotonic()
    samples = load.samples()
    slow = [s for s in samples if s.done < pause_start]
    paused = [s for s in samples if pause_start <= s.sent and s.done < small_start]
    small = [s for s in samples if small_start + 0.5 <= s.sent and s.done <= small_end]
    slow_report = reporter.add(summarise("redis +50 ms (proxy), then 0", slow, slow_end))
    paused_report = reporter.add(summarise("redis held 1 s (proxy paused)", paused, pause_end))
    reporter.add(summarise("redis +5 ms (proxy)", small, note=f"under the 15 ms budget; 1st clean 1 s window: {clean}"))
    check_redis_fault(slow, slow_report, slow_start, slow_end, grace_s=0.2)
    check_redis_fault(paused, paused_report, pause_start, pause_end)
    # +5 ms leaves ~10 ms of the 15 ms stage: usually not one answer degrades, but a burst of CPU
    # noise from neighbours on the two shared cores can eat those 10 ms for a moment. A systematic
    # problem would never give a clean second; a noisy neighbour does not last for all of them.
    assert clean is not None, f"no 1 s window of {CLEAN_WINDOW_TRIES} at +5 ms without a degraded answer or an error"
    assert_acknowledged_events_stored(samples, redis)
    assert probe(server) == before
    assert proxy.connections > 0
    finish(server)
