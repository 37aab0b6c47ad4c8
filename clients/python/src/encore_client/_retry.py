"""When to retry a failed call, and how long to wait first (shared by the sync and asyncio clients).

Retried: ``UNAVAILABLE`` (the server or the feature store is unreachable; nothing was answered),
after an exponential backoff with full jitter, and ``RESOURCE_EXHAUSTED`` only when the server sent
the ``grpc-retry-pushback-ms`` trailer (Encore's admission control refusing a call before reading it),
after exactly that many milliseconds (gRPC's retry design, A6). A ``RESOURCE_EXHAUSTED`` without the
trailer (e.g. a message over the size limit) and every other status are final. No wait ever runs past
the call's deadline: the last error is raised instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

PUSHBACK_KEY = "grpc-retry-pushback-ms"


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts`` attempts (1 = never retry); before attempt n+1 after an UNAVAILABLE,
    a wait drawn uniformly from [0, min(max_backoff_s, initial_backoff_s × multiplier^(n-1)))."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: must be at least 1, got {self.max_attempts}")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError(
                f"initial_backoff_s, max_backoff_s: need 0 < initial ≤ max, got {self.initial_backoff_s}, "
                f"{self.max_backoff_s}"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier: must be at least 1, got {self.multiplier}")


NO_RETRY = RetryPolicy(max_attempts=1)


def pushback_ms(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> int | None:
    """The server's ``grpc-retry-pushback-ms`` value, or None when absent or not a non-negative integer
    (an invalid pushback means "do not retry", as in gRPC's own retry support)."""
    for key, value in trailing_metadata or ():
        if key.lower() == PUSHBACK_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            return int(text) if text.isascii() and text.isdigit() else None
    return None


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    code: grpc.StatusCode | None,
    trailing_metadata: Iterable[tuple[str, str | bytes]] | None,
    uniform: float | None = None,
) -> float | None:
    """Seconds to wait before retrying after ``attempt`` (1-based) failed with ``code``, or None when the
    call must not be retried. ``uniform`` in [0, 1) is the jitter draw (default: ``random.random()``)."""
    if attempt >= policy.max_attempts:
        return None
    if code is grpc.StatusCode.UNAVAILABLE:
        cap = min(policy.max_backoff_s, policy.initial_backoff_s * policy.multiplier ** (attempt - 1))
        return cap * (random.random() if uniform is None else uniform)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        ms = pushback_ms(trailing_metadata)
        return None if ms is None else ms / 1000.0
    return None
