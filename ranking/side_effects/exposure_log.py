"""Logs an exposure for every experiment the user is really in, after the response."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ranking.types import Query, RankResult


@dataclass(frozen=True, slots=True)
class ExposureEvent:
    """One exposure: ``unit_id`` saw ``variant`` of ``experiment`` (keys as in the config)."""

    ts_ms: int
    unit_id: str
    experiment: str
    variant: str
    surface: str
    request_id: str
    model_version: str
    bundle_version: str


class ExposureSink(Protocol):
    def offer(self, events: Iterable[ExposureEvent]) -> None: ...


class ExposureLogSideEffect:
    """Offers one ``ExposureEvent`` per exposed assignment of the query to ``sink`` (non-blocking)."""

    name = "exposure_log"

    def __init__(self, sink: ExposureSink, bundle_version: str) -> None:
        self._sink = sink
        self._bundle_version = bundle_version

    def enabled(self, query: Query) -> bool:
        return any(a.exposed for a in query.assignments)

    async def run(self, query: Query, result: RankResult) -> None:
        ts_ms = int(time.time() * 1000)
        self._sink.offer(
            ExposureEvent(
                ts_ms=ts_ms,
                unit_id=query.user_id,
                experiment=a.experiment,
                variant=a.variant,
                surface=query.surface.value,
                request_id=query.request_id,
                model_version=result.model_version,
                bundle_version=self._bundle_version,
            )
            for a in query.assignments
            if a.exposed
        )
