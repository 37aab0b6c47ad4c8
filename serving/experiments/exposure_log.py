"""Exposure log: one JSON line per (unit, experiment) when a user is really in an experiment.

Events are offered from the request path and written behind it by ``serving.logsink``: a full
queue or a failed write drops them and counts them by reason (``encore_exposures_dropped_total``),
never blocking or failing a request.

Line format (what ``encore experiments analyze`` reads)::

    {"ts_ms": 1763870000123, "unit_id": "u42", "experiment": "home-ranker-lite", "variant": "lite",
     "surface": "home", "request_id": "...", "model_version": "lgbm-v1-lite", "bundle_version": "..."}

Files: ``<dir>/exposures-<UTC start>-<pid>-<seq>.jsonl``, a new one after ``max_bytes``.
Dedupe is per process and bounded (an LRU of recent (unit, experiment) pairs); a dropped exposure
is forgotten so the unit's next request logs it again; the analysis dedupes again, so a restart
that logs a unit twice is harmless. ``encore_exposures_total`` counts lines written.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from prometheus_client import Counter

from ranking.side_effects.exposure_log import ExposureEvent
from serving.logsink import BackgroundWriter, RotatingFileWriter, json_line


def exposure_files(directory: Path, max_bytes: int = 64 << 20) -> RotatingFileWriter:
    return RotatingFileWriter(directory, prefix="exposures", suffix=".jsonl", max_bytes=max_bytes)


def encode_exposure(event: ExposureEvent) -> bytes:
    return json_line(asdict(event))


class ExposureLog:
    """Bounded, deduplicated, asynchronous exposure logging. ``start`` then ``offer`` then ``close``."""

    def __init__(
        self,
        writer: RotatingFileWriter,
        *,
        exposures: Counter,
        dropped: Counter,
        queue_size: int = 10_000,
        dedupe_size: int = 1_000_000,
    ) -> None:
        self._dropped = dropped
        self._sink = BackgroundWriter(
            writer, encode_exposure, self._on_dropped, written=self._on_written, queue_size=queue_size
        )
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._dedupe_size = dedupe_size
        self._exposures = exposures

    def start(self) -> None:
        self._sink.start()

    def offer(self, events: Iterable[ExposureEvent]) -> None:
        """Queue events not logged before for their (unit, experiment); never blocks or raises."""
        for event in events:
            key = (event.unit_id, event.experiment)
            if key in self._seen:
                self._seen.move_to_end(key)
                continue
            if not self._sink.offer(event):
                continue
            self._seen[key] = None
            if len(self._seen) > self._dedupe_size:
                self._seen.popitem(last=False)

    async def close(self) -> None:
        await self._sink.close()

    def _on_written(self, events: list[ExposureEvent]) -> None:
        for event in events:
            self._exposures.labels(event.experiment, event.variant).inc()

    def _on_dropped(self, reason: str, events: list[ExposureEvent]) -> None:
        """Count the loss, and forget the pairs so the unit's next request logs them again."""
        self._dropped.labels(reason).inc(len(events))
        for event in events:
            self._seen.pop((event.unit_id, event.experiment), None)
