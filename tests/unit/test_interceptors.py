"""The request-id interceptor: every unary RPC runs with its request id bound, handlers set nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError

from encore.v1 import ranking_pb2 as pb
from serving.errors import InvalidRequest
from serving.interceptors import RequestIdInterceptor
from serving.request_context import current_request_id, request_id_var

SERVICE = "encore.v1.RankingService"
RANK = f"/{SERVICE}/Rank"


def lenient(data: bytes) -> pb.RankRequest | None:
    """Like the server's deserializer: None for bytes that do not decode."""
    try:
        return pb.RankRequest.FromString(data)
    except DecodeError:
        return None


class Echo:
    """A Rank handler that answers the bound request id and records what log records would show."""

    def __init__(self) -> None:
        self.logged: list[str] = []

    async def rank(self, request: pb.RankRequest | None, context: grpc.aio.ServicerContext) -> pb.RankResponse:  # type: ignore[type-arg]
        self.logged.append(request_id_var.get())
        try:
            request_id = current_request_id()
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.RankResponse(request_id=request_id)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Echo, grpc.aio.Channel]]:
    echo = Echo()
    server = grpc.aio.server(interceptors=[RequestIdInterceptor()])
    handler = grpc.unary_unary_rpc_method_handler(
        echo.rank, request_deserializer=lenient, response_serializer=pb.RankResponse.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Rank": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield echo, channel
    finally:
        await server.stop(None)


async def call(channel: grpc.aio.Channel, payload: bytes) -> pb.RankResponse:
    rank = channel.unary_unary(RANK, request_serializer=None, response_deserializer=pb.RankResponse.FromString)
    response: pb.RankResponse = await rank(payload, timeout=5)
    return response


async def test_the_clients_request_id_is_bound_for_the_handler_and_its_log_records(
    served: tuple[Echo, grpc.aio.Channel],
) -> None:
    echo, channel = served
    for request_id in ("req-1", "-", "r" * 128):  # up to the 128-character maximum
        response = await call(channel, pb.RankRequest(user_id="u", request_id=request_id).SerializeToString())
        assert response.request_id == request_id
    assert echo.logged == ["req-1", "-", "r" * 128]


async def test_a_missing_or_undecodable_request_gets_a_fresh_id_per_call(served: tuple[Echo, grpc.aio.Channel]) -> None:
    echo, channel = served
    first = await call(channel, pb.RankRequest(user_id="u").SerializeToString())
    second = await call(channel, pb.RankRequest(user_id="u").SerializeToString())
    undecodable = await call(channel, b"\xff" * 16)  # the lenient deserializer answers None
    ids = [first.request_id, second.request_id, undecodable.request_id]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == 3
    assert echo.logged == ids


async def test_an_over_long_request_id_is_refused_by_the_handler_naming_the_field(
    served: tuple[Echo, grpc.aio.Channel],
) -> None:
    echo, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, pb.RankRequest(user_id="u", request_id="x" * 129).SerializeToString())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "request_id: is 129 characters, the maximum is 128"
    assert echo.logged == ["-"]  # the refused id never reaches the log


async def test_nothing_is_bound_outside_an_rpc(served: tuple[Echo, grpc.aio.Channel]) -> None:
    _, channel = served
    await call(channel, pb.RankRequest(user_id="u", request_id="inside").SerializeToString())
    assert request_id_var.get() == "-"
    with pytest.raises(RuntimeError, match="RequestIdInterceptor"):
        current_request_id()


async def test_streaming_handlers_pass_through_and_unary_wrappers_are_reused() -> None:
    async def stream(request: Any, context: Any) -> AsyncIterator[pb.RankResponse]:
        yield pb.RankResponse()

    async def unary(request: Any, context: Any) -> pb.RankResponse:
        return pb.RankResponse()

    streaming = grpc.unary_stream_rpc_method_handler(stream)
    plain = grpc.unary_unary_rpc_method_handler(unary)
    handlers = {"/s/Stream": streaming, "/s/Unary": plain}

    class Details(grpc.HandlerCallDetails):
        def __init__(self, method: str) -> None:
            self.method = method
            self.invocation_metadata = ()

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handlers.get(details.method)

    interceptor = RequestIdInterceptor()
    assert await interceptor.intercept_service(continuation, Details("/s/Stream")) is streaming
    assert await interceptor.intercept_service(continuation, Details("/s/Missing")) is None
    wrapped = await interceptor.intercept_service(continuation, Details("/s/Unary"))
    assert wrapped is not plain and wrapped.unary_unary is not unary
    assert await interceptor.intercept_service(continuation, Details("/s/Unary")) is wrapped
