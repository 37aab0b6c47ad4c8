"""encore_client's retries and deadlines against a scripted in-process RankingService (real gRPC).

The client package is staged from protos/ (``clients/python/build_client.py``) into a temporary
directory and imported from there; the fake server uses the server's own ``encore.v1`` stubs, so
both sets of generated modules live in this one process (the layout decision under test too).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from tests.support import load_build_client

REPO = Path(__file__).resolve().parents[2]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def ec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """``encore_client``, staged from protos/ and imported (removed from sys.modules afterwards)."""
    src = load_build_client().stage(tmp_path_factory.mktemp("encore-client"))
    sys.path.insert(0, str(src))
    try:
        yield importlib.import_module("encore_client")
    finally:
        sys.path.remove(str(src))
        for name in [n for n in sys.modules if n == "encore_client" or n.startswith("encore_client.")]:
            del sys.modules[name]


@dataclass
class Failure:
    code: grpc.StatusCode
    trailer: tuple[tuple[str, str], ...] = ()


@dataclass
class Scripted(pb_grpc.RankingServiceServicer):
    """Answers each call with the next scripted outcome (a Failure, else OK); records every attempt."""

    outcomes: list[Failure | None]
    arrivals: list[float] = field(default_factory=list)
    remaining: list[float] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _next(self, context: Any) -> None:
        with self.lock:
            self.arrivals.append(time.monotonic())
            self.remaining.append(context.time_remaining())
            self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
            outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if outcome is not None:
            context.set_trailing_metadata(outcome.trailer)
            context.abort(outcome.code, f"scripted {outcome.code.name}")

    def Rank(self, request: pb.RankRequest, context: Any) -> pb.RankResponse:
        self._next(context)
        items = [pb.RankedItem(item_id=f"i{n}", position=n) for n in range(request.limit or 3)]
        return pb.RankResponse(request_id=request.request_id or "generated", items=items)

    def RecordEvents(self, request: pb.RecordEventsRequest, context: Any) -> pb.RecordEventsResponse:
        self._next(context)
        return pb.RecordEventsResponse(accepted=len(request.events))


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(outcomes)`` → (target, servicer): a real gRPC server on loopback playing the script."""
    servers: list[grpc.Server] = []

    def start(outcomes: list[Failure | None]) -> tuple[str, Scripted]:
        servicer = Scripted(outcomes)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_RankingServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}", servicer

    yield start
    for server in servers:
        server.stop(grace=None)


FAST = {"initial_backoff_s": 0.01, "max_backoff_s": 0.02}


def test_retry_delay_rules(ec: ModuleType) -> None:
    from encore_client._retry import retry_delay

    policy = ec.RetryPolicy(max_attempts=4, initial_backoff_s=0.1, max_backoff_s=0.3, multiplier=2.0)
    assert retry_delay(policy, 1, UNAVAILABLE, None, uniform=0.5) == pytest.approx(0.05)
    assert retry_delay(policy, 2, UNAVAILABLE, None, uniform=0.5) == pytest.approx(0.1)
    assert retry_delay(policy, 3, UNAVAILABLE, None, uniform=0.999) == pytest.approx(0.2997)  # capped at 0.3
    assert retry_delay(policy, 4, UNAVAILABLE, None) is None  # attempts used up
    draws = {retry_delay(policy, 2, UNAVAILABLE, None) for _ in range(50)}
    assert len(draws) > 40 and all(d is not None and 0 <= d < 0.2 for d in draws)  # jittered in [0, cap)
    assert retry_delay(policy, 1, EXHAUSTED, [("grpc-retry-pushback-ms", "250")]) == pytest.approx(0.25)
    assert retry_delay(policy, 1, EXHAUSTED, [("other", "1")]) is None
    for bad in ("-5", "abc", ""):
        assert retry_delay(policy, 1, EXHAUSTED, [("grpc-retry-pushback-ms", bad)]) is None
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL):
        assert retry_delay(policy, 1, code, [("grpc-retry-pushback-ms", "1")]) is None
    with pytest.raises(ValueError, match="max_attempts"):
        ec.RetryPolicy(max_attempts=0)


def test_unavailable_is_retried_until_ok_with_metadata_on_every_attempt(ec: ModuleType, serve: Any) -> None:
    target, server = serve([Failure(UNAVAILABLE), Failure(UNAVAILABLE), None])
    retry = ec.RetryPolicy(max_attempts=3, **FAST)
    with ec.Client(target, retry=retry, metadata=[("authorization", "Bearer t0k3n")]) as client:
        response = client.rank("u1", "home", limit=2, request_id="r-1")
    assert [i.item_id for i in response.items] == ["i0", "i1"] and response.request_id == "r-1"
    assert len(server.arrivals) == 3
    assert all(m.get("authorization") == "Bearer t0k3n" for m in server.metadata)


def test_attempts_are_bounded_and_the_last_error_is_raised(ec: ModuleType, serve: Any) -> None:
    target, server = serve([Failure(UNAVAILABLE)])
    with ec.Client(target, retry=ec.RetryPolicy(max_attempts=3, **FAST)) as client, pytest.raises(grpc.RpcError) as e:
        client.rank("u1", "home")
    assert e.value.code() is UNAVAILABLE and len(server.arrivals) == 3


def test_resource_exhausted_waits_for_the_servers_pushback(ec: ModuleType, serve: Any) -> None:
    target, server = serve([Failure(EXHAUSTED, (("grpc-retry-pushback-ms", "300"),)), None])
    with ec.Client(target, retry=ec.RetryPolicy(**FAST), deadline_s=5.0) as client:
        assert len(client.rank("u1", "home").items) == 3
    assert len(server.arrivals) == 2
    assert server.arrivals[1] - server.arrivals[0] >= 0.3


@pytest.mark.parametrize(
    "failure", [Failure(EXHAUSTED), Failure(grpc.StatusCode.INVALID_ARGUMENT), Failure(grpc.StatusCode.INTERNAL)]
)
def test_other_failures_are_final(ec: ModuleType, serve: Any, failure: Failure) -> None:
    target, server = serve([failure, None])
    with ec.Client(target, retry=ec.RetryPolicy(**FAST)) as client, pytest.raises(grpc.RpcError) as e:
        client.record_events("u1", [ec.Event(type=ec.EventType.EVENT_TYPE_PLAY, item_id="i1")])
    assert e.value.code() is failure.code and len(server.arrivals) == 1


def recorded_sleeps(ec: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the client asks for (still waited: the server sees real time pass)."""
    client_module = importlib.import_module("encore_client._client")
    waits: list[float] = []
    real_sleep = client_module.time.sleep

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(client_module.time, "sleep", sleep)
    return waits


def test_the_deadline_bounds_all_attempts_and_waits(
    ec: ModuleType, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, server = serve([Failure(UNAVAILABLE)])
    waits = recorded_sleeps(ec, monkeypatch)
    retry = ec.RetryPolicy(max_attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.05)
    with ec.Client(target, retry=retry, deadline_s=30.0) as client, pytest.raises(grpc.RpcError) as e:
        client.rank("u1", "home", deadline_s=0.6)
    assert e.value.code() in (UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert sum(waits) < 0.6  # the waits fit inside the deadline: none ran past it
    assert len(server.arrivals) >= 3  # retried meanwhile
    # each attempt carried a deadline no later than the call's (gRPC encodes it rounded up, hence the 0.05)
    assert all(r is not None and r <= 0.65 for r in server.remaining), server.remaining
    assert server.remaining[-1] < server.remaining[0]


def test_a_pushback_longer_than_the_deadline_fails_at_once(
    ec: ModuleType, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, server = serve([Failure(EXHAUSTED, (("grpc-retry-pushback-ms", "2000"),)), None])
    waits = recorded_sleeps(ec, monkeypatch)
    with ec.Client(target, deadline_s=0.5) as client, pytest.raises(grpc.RpcError) as e:
        client.rank("u1", "home")
    assert e.value.code() is EXHAUSTED and len(server.arrivals) == 1
    assert waits == []  # no wait at all: the pushback could not fit in the deadline


async def test_async_client_retries_record_events(ec: ModuleType, serve: Any) -> None:
    target, server = serve([Failure(UNAVAILABLE), None])
    events = [ec.Event(type=ec.EventType.EVENT_TYPE_PLAY, item_id=f"i{n}", timestamp_ms=n) for n in range(4)]
    async with ec.AsyncClient(target, retry=ec.RetryPolicy(**FAST)) as client:
        assert await client.record_events("u1", events) == 4
        response = await client.rank("u1", "now_playing", 5, seed_item_id="i9")
    assert len(response.items) == 5 and len(server.arrivals) == 3


def test_arguments_are_checked_before_sending(ec: ModuleType, serve: Any) -> None:
    target, server = serve([None])
    with ec.Client(target) as client:
        for kwargs, field_name in (
            ({"surface": "sideways"}, "surface"),
            ({"surface": "home", "limit": -1}, "limit"),
            ({"surface": "home", "deadline_s": 0}, "deadline_s"),
        ):
            with pytest.raises(ValueError, match=field_name):
                client.rank("u1", **kwargs)
    assert server.arrivals == []
    with pytest.raises(ValueError, match="certificate_chain"):
        ec.TLS(certificate_chain=b"pem")


def test_client_and_server_stubs_share_one_process(ec: ModuleType) -> None:
    from encore_client.v1 import ranking_pb2 as client_pb

    assert client_pb.__name__ == "encore_client.v1.ranking_pb2" and pb.__name__ == "encore.v1.ranking_pb2"
    assert client_pb.DESCRIPTOR.name == pb.DESCRIPTOR.name == "encore/v1/ranking.proto"  # one file in the pool
    assert client_pb.RankRequest.DESCRIPTOR.full_name == "encore.v1.RankRequest"  # wire names unchanged
    wire = client_pb.RankRequest(user_id="u", surface=client_pb.SURFACE_HOME).SerializeToString()
    assert pb.RankRequest.FromString(wire).surface == pb.SURFACE_HOME
    assert (ec.PROTO_ROOT / "encore" / "v1" / "ranking.proto").read_text() == (
        REPO / "protos" / "encore" / "v1" / "ranking.proto"
    ).read_text()
