"""Admission (``serving.admission``): an in-flight cap, CoDel on the queueing delay, expired calls dropped.

The controller runs on a fake clock; the interceptor runs in a real gRPC server on a free port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from encore.v1 import ranking_pb2 as pb
from serving.admission import AdmissionController, AdmissionLimits, Verdict
from serving.interceptors import AdmissionInterceptor
from serving.metrics import Metrics

SERVICE = "encore.v1.RankingService"
RANK = f"/{SERVICE}/Rank"
LIMITS = AdmissionLimits(max_in_flight=2, max_pending=4, target_s=0.005, interval_s=0.1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def controller() -> tuple[AdmissionController, Clock]:
    clock = Clock()
    return AdmissionController(LIMITS, clock), clock


def test_the_in_flight_cap_refuses_at_arrival_and_a_finished_call_frees_its_slot() -> None:
    c, _ = controller()
    for _ in range(2):
        assert c.admit() is Verdict.ADMIT
        assert c.started(0.001, 1.0) is Verdict.ADMIT
    assert c.in_flight == 2
    assert c.admit() is Verdict.IN_FLIGHT
    c.finished()
    assert c.admit() is Verdict.ADMIT


def test_a_burst_shorter_than_the_interval_is_not_a_standing_queue() -> None:
    c, clock = controller()
    for _ in range(5):  # 80 ms of delays above target, then one under it
        assert c.started(0.02, 1.0) is Verdict.ADMIT
        c.finished()
        clock.now += 0.02
    assert c.started(0.001, 1.0) is Verdict.ADMIT
    clock.now += 0.05
    assert c.started(0.02, 1.0) is Verdict.ADMIT  # a new run of high delays starts from zero
    assert not c.standing


def test_delays_above_target_for_a_whole_interval_shed_until_one_falls_under_it() -> None:
    c, clock = controller()
    for _ in range(6):
        if c.started(0.02, 1.0) is Verdict.ADMIT:
            c.finished()
        clock.now += 0.025
    assert c.standing
    assert c.started(0.02, 1.0) is Verdict.QUEUE_DELAY  # its own delay is above target: refused
    assert c.in_flight == 0
    clock.now += 0.01
    assert c.admit() is Verdict.ADMIT  # one probe per target interval measures the queue
    assert c.admit() is Verdict.QUEUE_DELAY
    clock.now += 0.004
    assert c.admit() is Verdict.QUEUE_DELAY
    assert c.started(0.001, 1.0) is Verdict.ADMIT  # the probe saw a short queue: standing ends
    assert not c.standing and c.admit() is Verdict.ADMIT
    assert c.pushback_ms == 100


def test_a_call_whose_deadline_passed_is_expired_and_takes_no_slot() -> None:
    c, _ = controller()
    assert c.started(0.001, 0.0) is Verdict.EXPIRED
    assert c.started(0.001, -0.5) is Verdict.EXPIRED
    assert c.started(0.001, None) is Verdict.ADMIT  # no deadline: never expires
    assert c.in_flight == 1


class Gate:
    """A Rank handler that holds every call until released."""

    def __init__(self) -> None:
        self.entered = 0
        self.release = asyncio.Event()

    async def rank(self, request: Any, context: Any) -> pb.RankResponse:
        self.entered += 1
        await self.release.wait()
        return pb.RankResponse(request_id="done")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Gate, AdmissionController, Metrics, grpc.aio.Channel]]:
    gate, metrics = Gate(), Metrics(CollectorRegistry())
    admission = AdmissionController(AdmissionLimits(max_in_flight=1, max_pending=4))
    server = grpc.aio.server(interceptors=[AdmissionInterceptor(admission, metrics, [RANK])])
    handler = grpc.unary_unary_rpc_method_handler(
        gate.rank, request_deserializer=pb.RankRequest.FromString, response_serializer=pb.RankResponse.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Rank": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield gate, admission, metrics, channel
    finally:
        gate.release.set()
        await server.stop(None)


async def _until(condition: Any, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def test_past_the_cap_a_call_gets_resource_exhausted_with_a_retry_hint_and_is_counted(
    served: tuple[Gate, AdmissionController, Metrics, grpc.aio.Channel],
) -> None:
    gate, admission, metrics, channel = served
    rank = channel.unary_unary(
        RANK, request_serializer=pb.RankRequest.SerializeToString, response_deserializer=pb.RankResponse.FromString
    )
    first = asyncio.ensure_future(rank(pb.RankRequest(user_id="u"), timeout=30))
    await _until(lambda: gate.entered == 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rank(pb.RankRequest(user_id="u"), timeout=30)
    error = caught.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_in_flight" in (error.details() or "")
    assert dict(error.trailing_metadata() or ())["grpc-retry-pushback-ms"] == "100"
    assert gate.entered == 1  # the refused call never reached the handler
    shed = {"method": "Rank", "reason": "in_flight"}
    assert metrics.registry.get_sample_value("encore_shed_requests_total", shed) == 1
    gate.release.set()
    assert (await first).request_id == "done"
    assert admission.in_flight == 0  # the slot came back
    assert (await rank(pb.RankRequest(user_id="u"), timeout=30)).request_id == "done"


async def test_a_call_that_reaches_its_handler_after_its_deadline_is_dropped_quietly_and_counted() -> None:
    metrics = Metrics(CollectorRegistry())
    admission = AdmissionController(AdmissionLimits())
    interceptor = AdmissionInterceptor(admission, metrics, [RANK])
    ran: list[str] = []

    async def behaviour(request: Any, context: Any) -> pb.RankResponse:
        ran.append("ran")
        return pb.RankResponse()

    class Expired:
        def time_remaining(self) -> float:
            return -0.01

    handle = interceptor._admitted("Rank", behaviour)
    with pytest.raises(asyncio.CancelledError):
        await handle(pb.RankRequest(), Expired())
    assert ran == [] and admission.in_flight == 0
    assert metrics.registry.get_sample_value("encore_expired_requests_total", {"method": "Rank"}) == 1


async def test_other_services_pass_through_untouched() -> None:
    admission = AdmissionController(AdmissionLimits(max_in_flight=1))
    admission.in_flight = 1  # full: a ranking call would be refused
    interceptor = AdmissionInterceptor(admission, Metrics(CollectorRegistry()), [RANK])
    health = grpc.unary_unary_rpc_method_handler(lambda request, context: None)

    class Details(grpc.HandlerCallDetails):
        method = "/grpc.health.v1.Health/Check"
        invocation_metadata = ()

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return health

    assert await interceptor.intercept_service(continuation, Details()) is health


async def test_an_exception_nobody_retrieved_is_logged_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    from serving.server import log_unhandled

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(log_unhandled)
    try:

        async def fail() -> None:
            raise ConnectionError("cluster discovery failed")

        task = loop.create_task(fail(), name="discovery")
        await asyncio.wait([task])
        del task  # never retrieved: the loop reports it when the task is collected
        import gc

        gc.collect()
    finally:
        loop.set_exception_handler(None)
    lines = [r for r in caplog.records if r.name == "serving.server"]
    expected = "unhandled error in discovery: ConnectionError: cluster discovery failed"
    assert [r.getMessage() for r in lines] == [expected]
    assert all(r.exc_info is None for r in lines)
