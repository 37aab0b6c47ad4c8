"""gRPC server interceptors: cross-cutting per-RPC work, so handlers do not repeat it.

``RequestIdInterceptor`` binds the request id (``serving.request_context``) around every unary
RPC: the request message's ``request_id`` field when it has one (validated by
``serving.requests.request_id_of``, at most 128 characters), else a fresh id. Undecodable requests
(None from the lenient deserializer) and messages without the field (health checks) get a fresh
id too. Streaming RPCs (health ``Watch``, reflection) pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from serving.errors import InvalidRequest
from serving.request_context import bind_request_id
from serving.requests import request_id_of

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the type stubs


def _request_id(request: object) -> str | InvalidRequest:
    raw = getattr(request, "request_id", "")
    try:
        return request_id_of(raw if isinstance(raw, str) else "")
    except InvalidRequest as exc:  # raised in the handler by current_request_id()
        return exc


def _bound(behaviour: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def handle(request: Any, context: Any) -> Any:
        with bind_request_id(_request_id(request)):
            return await behaviour(request, context)

    return handle


class RequestIdInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Binds the request id for every unary-unary RPC before its handler runs (asyncio handlers)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}  # method → (original, wrapped)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        details = handler_call_details
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        cached = self._wrapped.get(details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = grpc.unary_unary_rpc_method_handler(
            _bound(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[details.method] = (handler, wrapped)
        return wrapped
