"""A reusable locust user for gRPC services, after locust's documented gRPC example.

Importing this module patches gRPC to cooperate with gevent (``grpc.experimental.gevent.init_gevent``),
so it must be imported before any gRPC channel is created — locust itself has already monkey-patched
the standard library by then. Every unary-unary call made through ``self.channel`` is timed by a
client interceptor and reported with ``environment.events.request``; a call that ends with a non-OK
status is reported as a failure carrying its ``grpc.RpcError``.

Subclasses set ``stub_class`` (a generated ``*Stub``) and get ``self.stub``; they may override
``request_name`` to split the statistics of one method (e.g. by a request field), and use
``call`` to make a request whose failure is already reported, so the task carries on.

    class MyUser(GrpcUser[pb_grpc.MyServiceStub]):
        stub_class = pb_grpc.MyServiceStub

        @task
        def hello(self) -> None:
            self.call(self.stub.Hello, pb.HelloRequest(name="x"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import grpc
import grpc.experimental.gevent as grpc_gevent
from google.protobuf.message import Message
from locust import User
from locust.env import Environment
from locust.exception import LocustError

# patch grpc so that it uses gevent instead of its own threads and polling
grpc_gevent.init_gevent()

StubT = TypeVar("StubT")
RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)

Namer = Callable[[str, Any], str]


def method_name(method: str | bytes) -> str:
    """``/encore.v1.RankingService/Rank`` → ``Rank``."""
    text = method.decode() if isinstance(method, bytes) else method
    return text.rsplit("/", 1)[-1]


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Times each unary-unary call and fires locust's ``request`` event (success or failure)."""

    def __init__(self, environment: Environment, namer: Namer) -> None:
        self.env = environment
        self.namer = namer

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        exception: Exception | None = None
        response_length = 0
        start = time.perf_counter()
        response = continuation(client_call_details, request)
        try:
            # the outcome is a Call and a Future: result() raises the RpcError of a failed call
            response_length = response.result().ByteSize()
        except grpc.RpcError as e:
            exception = e
        self.env.events.request.fire(  # type: ignore[no-untyped-call]
            request_type="grpc",
            name=self.namer(client_call_details.method, request),
            response_time=(time.perf_counter() - start) * 1000,
            response_length=response_length,
            response=response,
            context={},
            exception=exception,
        )
        return response


class GrpcUser(User, Generic[StubT]):
    """A locust user with an intercepted insecure channel to ``host`` (``HOST:PORT``) and a stub."""

    abstract = True
    stub_class: ClassVar[type[Any] | None] = None

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise LocustError("You must specify the host (--host HOST:PORT).")
        if self.stub_class is None:
            raise LocustError("You must specify the stub_class.")
        self._raw_channel = grpc.insecure_channel(self.host)
        self.channel = grpc.intercept_channel(self._raw_channel, LocustInterceptor(environment, self.request_name))
        self.stub: StubT = self.stub_class(self.channel)

    def request_name(self, method: str, request: Any) -> str:
        """The name the call's statistics go under; the method's short name unless overridden."""
        return method_name(method)

    def call(
        self,
        rpc: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        timeout: float | None = None,
    ) -> ResponseT | None:
        """Make a call; on a non-OK status return None (the failure has been reported already)."""
        try:
            return rpc(request, timeout=timeout)
        except grpc.RpcError:
            return None

    def on_stop(self) -> None:
        self._raw_channel.close()
