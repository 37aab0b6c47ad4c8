"""gRPC server interceptors: cross-cutting per-RPC work, so handlers do not repeat it.

``RequestIdInterceptor`` binds the request id (``serving.request_context``) around every unary
RPC: the request message's ``request_id`` field when it has one (validated by
``serving.requests.request_id_of``, at most 128 characters), else a fresh id. Undecodable requests
(None from the lenient deserializer) and messages without the field (health checks) get a fresh
id too. Streaming RPCs (health ``Watch``, reflection) pass through untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc

from serving.admission import AdmissionController, Verdict
from serving.errors import InvalidRequest, Overloaded, status_for
from serving.metrics import Metrics
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


#: When the current call reached Python (set by ``AdmissionInterceptor`` in the call's own task).
_arrived: ContextVar[float] = ContextVar("encore_call_arrived", default=0.0)


class AdmissionInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Applies ``serving.admission`` to the unary RPCs named in ``methods`` (full names).

    On arrival, before the message is read or parsed: a refused call gets a handler that answers
    RESOURCE_EXHAUSTED with ``grpc-retry-pushback-ms`` at once (its bytes are never decoded). An
    admitted call's handler first reports its queueing delay to the controller, which may still
    refuse it (standing queue) or drop it without an answer (client deadline passed; counted in
    ``encore_expired_requests_total``); its in-flight slot is held for the handler's run only.
    Other services (health, reflection) pass through untouched.
    """

    def __init__(self, controller: AdmissionController, metrics: Metrics, methods: Iterable[str]) -> None:
        self._controller = controller
        self._metrics = metrics
        self._methods = {m: m.rsplit("/", 1)[-1] for m in methods}  # full name → short name (metric label)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}
        self._refuse_with = {
            (short, verdict): self._refuse(short, verdict)
            for short in self._methods.values()
            for verdict in (Verdict.IN_FLIGHT, Verdict.QUEUE_DELAY)
        }
        self._refusals = {key: grpc.unary_unary_rpc_method_handler(r) for key, r in self._refuse_with.items()}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        short = self._methods.get(method)
        if short is None:
            return await continuation(handler_call_details)
        verdict = self._controller.admit()
        if verdict is not Verdict.ADMIT:
            return self._refusals[(short, verdict)]
        _arrived.set(time.perf_counter())
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._admitted(short, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            cached = self._wrapped[method] = (handler, wrapped)
        return cached[1]

    def _admitted(
        self, method: str, behaviour: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        controller, metrics = self._controller, self._metrics
        refuse = self._refuse_with[(method, Verdict.QUEUE_DELAY)]

        async def handle(request: Any, context: Any) -> Any:
            delay = time.perf_counter() - _arrived.get()
            verdict = controller.started(delay, context.time_remaining())
            if verdict is Verdict.EXPIRED:
                metrics.expired.labels(method).inc()
                raise asyncio.CancelledError("the client's deadline passed before the handler started")
            if verdict is Verdict.QUEUE_DELAY:
                return await refuse(request, context)
            try:
                return await behaviour(request, context)
            finally:
                controller.finished()

        return handle

    def _refuse(self, method: str, verdict: Verdict) -> Callable[[Any, Any], Awaitable[Any]]:
        controller, shed = self._controller, self._metrics.shed.labels(method, verdict.value)
        if verdict is Verdict.IN_FLIGHT:
            why = f"{controller.limits.max_in_flight} requests in flight (max_in_flight)"
        else:
            why = f"queueing delay above {controller.limits.target_s * 1000:g} ms for a whole interval (CoDel)"
        code, message = status_for(Overloaded(f"overloaded: {why}; retry after grpc-retry-pushback-ms"))
        trailer = (("grpc-retry-pushback-ms", str(controller.pushback_ms)),)

        async def refuse(request: Any, context: Any) -> Any:
            shed.inc()
            await context.abort(code, message, trailing_metadata=trailer)

        return refuse
