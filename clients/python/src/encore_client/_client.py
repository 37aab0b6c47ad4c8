"""``Client`` (blocking) and ``AsyncClient`` (grpc.aio) for ``encore.v1.RankingService``.

Contract of every call: ``deadline_s`` (default: the client's) bounds the whole call, all attempts
and waits included; each attempt gets what remains of it as its gRPC deadline. Failures raise
``grpc.RpcError`` (``.code()``, ``.details()``) from the last attempt, after the retries that
``encore_client._retry`` allows. Bad arguments raise ValueError before anything is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar

import grpc
import grpc.aio

from encore_client._retry import RetryPolicy, retry_delay
from encore_client.v1 import ranking_pb2 as pb
from encore_client.v1 import ranking_pb2_grpc as pb_grpc

R = TypeVar("R")
SurfaceName: TypeAlias = Literal["home", "now_playing"]
_SURFACES: dict[str, pb.Surface.ValueType] = {"home": pb.SURFACE_HOME, "now_playing": pb.SURFACE_NOW_PLAYING}
Metadata: TypeAlias = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class TLS:
    """TLS to the server: ``root_certificates`` (PEM; None = the system's roots) verifies it, and
    ``certificate_chain`` with ``private_key`` (PEM, both or neither) is the client's certificate
    for a server started with ``--tls-client-ca`` (mutual TLS)."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("certificate_chain, private_key: give both (mutual TLS) or neither")

    @classmethod
    def from_files(
        cls, ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
    ) -> TLS:
        """The same, read from PEM files."""

        def read(path: str | Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return cls(read(ca), read(cert), read(key))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)


def _rank_request(
    user_id: str,
    surface: SurfaceName | pb.Surface.ValueType,
    limit: int,
    seed_item_id: str,
    request_id: str,
    context: pb.RequestContext | None,
    debug: bool,
) -> pb.RankRequest:
    if isinstance(surface, str):
        if surface not in _SURFACES:
            raise ValueError(f"surface: must be one of {sorted(_SURFACES)} or a Surface value, got {surface!r}")
        surface = _SURFACES[surface]
    if limit < 0:
        raise ValueError(f"limit: must be ≥ 0 (0 = the surface's default), got {limit}")
    return pb.RankRequest(
        user_id=user_id,
        surface=surface,
        limit=limit,
        seed_item_id=seed_item_id,
        request_id=request_id,
        context=context,
        debug=debug,
    )


def _check_deadline(deadline_s: float) -> float:
    if not deadline_s > 0:
        raise ValueError(f"deadline_s: must be > 0, got {deadline_s}")
    return deadline_s


def _status(exc: BaseException) -> tuple[grpc.StatusCode | None, Any]:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code(), exc.trailing_metadata()
    if isinstance(exc, grpc.Call):
        return exc.code(), exc.trailing_metadata()
    return None, None


class _Base:
    def __init__(self, deadline_s: float, retry: RetryPolicy, metadata: Metadata) -> None:
        self._deadline_s = _check_deadline(deadline_s)
        self._retry = retry
        self._metadata = tuple(metadata) or None

    def _budget(self, deadline_s: float | None) -> float:
        return time.monotonic() + _check_deadline(self._deadline_s if deadline_s is None else deadline_s)

    def _next_wait(self, exc: grpc.RpcError, attempt: int, deadline: float) -> float | None:
        code, trailing = _status(exc)
        delay = retry_delay(self._retry, attempt, code, trailing)
        return None if delay is None or time.monotonic() + delay >= deadline else delay


class Client(_Base):
    """A blocking client over one channel to ``target`` ("host:port"); thread-safe; close it (or use
    ``with``). ``tls`` None = plaintext. ``metadata`` is sent with every call (e.g. a gateway's
    ``("authorization", "Bearer …")``; Encore's RankingService itself checks no token).
    ``options`` are gRPC channel arguments."""

    def __init__(
        self,
        target: str,
        *,
        tls: TLS | None = None,
        deadline_s: float = 1.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen, so one shared default is safe)
        metadata: Metadata = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(deadline_s, retry, metadata)
        self._channel = (
            grpc.secure_channel(target, tls.credentials(), options)
            if tls is not None
            else grpc.insecure_channel(target, options)
        )
        self._stub = pb_grpc.RankingServiceStub(self._channel)

    def rank(
        self,
        user_id: str,
        surface: SurfaceName | pb.Surface.ValueType,
        limit: int = 0,
        *,
        seed_item_id: str = "",
        deadline_s: float | None = None,
        request_id: str = "",
        context: pb.RequestContext | None = None,
        debug: bool = False,
    ) -> pb.RankResponse:
        """``Rank``: up to ``limit`` items (0 = the surface's default) for ``user_id`` on ``surface``
        ("home", "now_playing" — which needs ``seed_item_id``, the item playing now — or a Surface)."""
        request = _rank_request(user_id, surface, limit, seed_item_id, request_id, context, debug)
        return self._call(
            lambda timeout: self._stub.Rank(request, timeout=timeout, metadata=self._metadata), deadline_s
        )

    def record_events(
        self, user_id: str, events: Iterable[pb.Event], *, deadline_s: float | None = None, request_id: str = ""
    ) -> int:
        """``RecordEvents`` (1..100 events); returns how many the server accepted. Retried on UNAVAILABLE,
        which the server answers when its feature store failed (the write may have landed: a retry can
        record a play twice)."""
        request = pb.RecordEventsRequest(user_id=user_id, events=events, request_id=request_id)
        response = self._call(
            lambda timeout: self._stub.RecordEvents(request, timeout=timeout, metadata=self._metadata), deadline_s
        )
        return response.accepted

    def _call(self, attempt_once: Callable[[float], R], deadline_s: float | None) -> R:
        deadline = self._budget(deadline_s)
        attempt = 1
        while True:
            try:
                return attempt_once(max(deadline - time.monotonic(), 0.0))
            except grpc.RpcError as exc:
                wait = self._next_wait(exc, attempt, deadline)
                if wait is None:
                    raise
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """``Client`` over grpc.aio: the same arguments and contract, coroutine methods; create it inside
    the event loop that uses it; ``await close()`` (or ``async with``)."""

    def __init__(
        self,
        target: str,
        *,
        tls: TLS | None = None,
        deadline_s: float = 1.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen, so one shared default is safe)
        metadata: Metadata = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(deadline_s, retry, metadata)
        self._channel = (
            grpc.aio.secure_channel(target, tls.credentials(), options)
            if tls is not None
            else grpc.aio.insecure_channel(target, options)
        )
        self._stub = pb_grpc.RankingServiceStub(self._channel)

    async def rank(
        self,
        user_id: str,
        surface: SurfaceName | pb.Surface.ValueType,
        limit: int = 0,
        *,
        seed_item_id: str = "",
        deadline_s: float | None = None,
        request_id: str = "",
        context: pb.RequestContext | None = None,
        debug: bool = False,
    ) -> pb.RankResponse:
        """See ``Client.rank``."""
        request = _rank_request(user_id, surface, limit, seed_item_id, request_id, context, debug)
        return await self._call(
            lambda timeout: self._stub.Rank(request, timeout=timeout, metadata=self._metadata), deadline_s
        )

    async def record_events(
        self, user_id: str, events: Iterable[pb.Event], *, deadline_s: float | None = None, request_id: str = ""
    ) -> int:
        """See ``Client.record_events``."""
        request = pb.RecordEventsRequest(user_id=user_id, events=events, request_id=request_id)
        response = await self._call(
            lambda timeout: self._stub.RecordEvents(request, timeout=timeout, metadata=self._metadata), deadline_s
        )
        return response.accepted

    async def _call(self, attempt_once: Callable[[float], Awaitable[R]], deadline_s: float | None) -> R:
        deadline = self._budget(deadline_s)
        attempt = 1
        while True:
            try:
                return await attempt_once(max(deadline - time.monotonic(), 0.0))
            except grpc.RpcError as exc:
                wait = self._next_wait(exc, attempt, deadline)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            attempt += 1

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
