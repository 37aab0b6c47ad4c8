"""The server's errors and the one mapping of errors to gRPC status codes (used only at the edge).

The whole tree of Encore's exceptions is in ``common.errors``. This module's part of it::

    EncoreError (common.errors)
    ├── InvalidRequest        the client sent bad input            → INVALID_ARGUMENT (names the field)
    ├── Overloaded            shed early instead of queueing       → RESOURCE_EXHAUSTED
    ├── ConfigError           bad settings or files; fail loudly at start-up (never mapped)
    └── ListenError           a listener cannot bind its address; fails start-up (never mapped)

``status_for`` also maps ``ranking.budget.DeadlineExceeded`` → DEADLINE_EXCEEDED and
``features.store.FeatureStoreError`` (a write could not be stored) → UNAVAILABLE (client retries).
On the read path dependency failures (Redis, FAISS, ONNX) never reach the edge: the pipeline fails
open and marks the answer degraded. Anything else is a programming error → INTERNAL, logged with
its traceback.
"""

from __future__ import annotations

import grpc

from common.errors import EncoreError
from features.store import FeatureStoreError
from ranking.budget import DeadlineExceeded

__all__ = ["ConfigError", "EncoreError", "InvalidRequest", "ListenError", "Overloaded", "status_for"]


class InvalidRequest(EncoreError):
    """Bad client input; ``field`` is the request field at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Overloaded(EncoreError):
    """Admission refused the call (too many in flight, or a standing queue); the client should back off
    and retry (``serving.interceptors.AdmissionInterceptor`` maps it through ``status_for``)."""


class ConfigError(EncoreError):
    """Settings or a file they name are invalid; the message names the key or file."""


class ListenError(EncoreError):
    """A listener could not bind its address (port in use, not a local address); names setting and reason."""


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and client-facing message for an exception raised while serving."""
    if isinstance(exc, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc) or "server overloaded, retry with backoff"
    if isinstance(exc, DeadlineExceeded):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)
    if isinstance(exc, FeatureStoreError):
        return (
            grpc.StatusCode.UNAVAILABLE,
            "feature store unavailable or too slow; the write may not have landed, retry",
        )
    return grpc.StatusCode.INTERNAL, "internal error"
