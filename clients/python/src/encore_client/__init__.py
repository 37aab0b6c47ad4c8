"""Client for the Encore ranking service (``encore.v1.RankingService`` over gRPC).

``Client`` / ``AsyncClient``: ``rank`` and ``record_events`` with a deadline per call and retries
(``RetryPolicy``) on UNAVAILABLE and on RESOURCE_EXHAUSTED with the server's pushback.
``encore_client.v1``: the generated stubs of every ``encore.v1`` service (messages in ``*_pb2``,
stubs in ``*_pb2_grpc``, typed by ``.pyi``); their proto package and file names are the server's
(``encore/v1/*.proto``), only the Python package differs. ``PROTO_ROOT``: the ``.proto`` files they
were generated from, an include root for protoc (``PROTO_ROOT / "encore/v1/ranking.proto"``).
"""

from pathlib import Path

from encore_client._client import TLS, AsyncClient, Client, SurfaceName
from encore_client._retry import NO_RETRY, RetryPolicy
from encore_client.v1.ranking_pb2 import (
    Event,
    EventType,
    RankedItem,
    RankResponse,
    RequestContext,
    Surface,
)

PROTO_ROOT = Path(__file__).parent / "protos"

__all__ = [
    "NO_RETRY",
    "PROTO_ROOT",
    "TLS",
    "AsyncClient",
    "Client",
    "Event",
    "EventType",
    "RankResponse",
    "RankedItem",
    "RequestContext",
    "RetryPolicy",
    "Surface",
    "SurfaceName",
]
