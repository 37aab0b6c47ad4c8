"""Admission: refuse early, by queueing delay and by count, so the calls that are admitted finish in time.

Three bounds, cheapest first (README, "Load shedding"):

1. gRPC core's backlog of calls that Python has not yet picked up holds at most ``max_pending``
   (``grpc.server.max_pending_requests``, set by ``serving.server``). Past it gRPC core refuses
   the call itself, before any Python runs; that is the only refusal cheap enough at 5× overload.
2. ``AdmissionController.admit`` runs when a call reaches Python (the interceptor, before its
   message is read or parsed): refused when ``max_in_flight`` calls are being handled, or while
   the queue is standing (below). A refused call gets RESOURCE_EXHAUSTED with
   ``grpc-retry-pushback-ms`` (gRPC's retry policy honours it; other clients back off that long).
3. ``AdmissionController.started`` runs when the handler starts, one turn of the event loop after
   ``admit``: that turn is the wait every newly arrived call has in front of it, the queueing
   delay. It is CoDel's sojourn time (Nichols & Jacobson, "Controlling Queue Delay", 2012): while
   the *minimum* delay seen over a whole ``interval`` stays above ``target`` a standing queue has
   formed (a burst alone does not keep the minimum that high), and from then on calls are refused
   at ``admit`` until a delay under ``target`` is seen again, except one probe call per ``target``
   that measures the delay. While standing, every call whose own delay exceeded ``target`` is
   refused at ``started`` too. A call whose client deadline has
   already passed is dropped there without an answer (nobody waits for it) and counted.

The controller is pure bookkeeping over a clock; the interceptor (``serving.interceptors``) owns
the gRPC side. One controller per process, used from its event loop only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class AdmissionLimits:
    """The knobs (settings ``max_in_flight``, ``max_pending``, ``queue_delay_target_ms``,
    ``queue_delay_interval_ms``)."""

    max_in_flight: int = 4
    max_pending: int = 8
    target_s: float = 0.005
    interval_s: float = 0.1


class Verdict(Enum):
    """What ``admit``/``started`` decided for a call."""

    ADMIT = "admit"
    IN_FLIGHT = "in_flight"  # refused: max_in_flight calls being handled
    QUEUE_DELAY = "queue_delay"  # refused: a standing queue (CoDel)
    EXPIRED = "expired"  # dropped: the client's deadline passed before the handler started


class AdmissionController:
    """CoDel on the event loop's queueing delay plus an in-flight cap (see the module docstring)."""

    def __init__(self, limits: AdmissionLimits, clock: Callable[[], float] = time.perf_counter) -> None:
        self.limits = limits
        self._clock = clock
        self.in_flight = 0
        self.standing = False  # a standing queue: refuse at admit
        self._above_since: float | None = None  # first moment of the current run of delays above target
        self._last_probe = -1e9

    @property
    def pushback_ms(self) -> int:
        """The retry hint sent with a refusal: one CoDel interval, the time the queue needs to drain."""
        return max(1, round(self.limits.interval_s * 1000))

    def admit(self) -> Verdict:
        """At the call's arrival in Python, before its message is read."""
        if self.standing:
            now = self._clock()
            if now - self._last_probe < self.limits.target_s:
                return Verdict.QUEUE_DELAY
            self._last_probe = now  # a probe: its delay may end the standing state
        if self.in_flight >= self.limits.max_in_flight:
            return Verdict.IN_FLIGHT
        return Verdict.ADMIT

    def started(self, delay_s: float, time_remaining_s: float | None) -> Verdict:
        """When an admitted call's handler starts, ``delay_s`` after ``admit``. ``ADMIT`` takes an
        in-flight slot for the handler's run (give it back with ``finished``)."""
        now = self._clock()
        limits = self.limits
        if delay_s < limits.target_s:
            self._above_since = None
            self.standing = False
        elif self._above_since is None:
            self._above_since = now
        elif now - self._above_since >= limits.interval_s:
            self.standing = True
        verdict = Verdict.ADMIT
        if time_remaining_s is not None and time_remaining_s <= 0:
            verdict = Verdict.EXPIRED
        elif self.standing and delay_s >= limits.target_s:
            verdict = Verdict.QUEUE_DELAY
        if verdict is Verdict.ADMIT:
            self.in_flight += 1
        return verdict

    def finished(self) -> None:
        """A handler that ``started`` admitted ended (any outcome)."""
        self.in_flight -= 1
