"""Outcome log: one JSON line per event ``RecordEvents`` accepted, for every user.

Every user is logged, in an experiment or not: the analysis needs outcomes from before a unit's
first exposure too (CUPED). Only events whose feature-store write succeeded are logged; a request
refused as invalid, or whose write failed, logs nothing. Lines are offered from the request path
and written behind it by ``serving.logsink``: a full queue or a failed write drops them and counts
them by reason (``encore_outcomes_dropped_total``), never blocking or failing a request;
``encore_outcomes_total{metric}`` counts lines written.

Line format (what ``offline.experiments.outcome_logs.load_outcomes`` reads; the rest are extra)::

    {"ts_ms": 1763870001000, "unit_id": "u42", "metric": "stream", "value": 1.0,
     "item_id": "t123", "event_ts_ms": 1763870000950}

``ts_ms`` is the server's receive time (``time.time()``, the exposure log's clock, so "after the
first exposure" compares like with like); ``event_ts_ms`` is the client's timestamp; ``metric`` is
``stream`` (a play), ``skip`` or ``like``, with value 1.0; ``surface`` is written only when known.
Files: ``<dir>/outcomes-<UTC start>-<pid>-<seq>.jsonl``, a new one after ``max_bytes``.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client import Counter

from serving.logsink import BackgroundWriter, RotatingFileWriter, json_line


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """``unit_id`` did ``metric`` (worth ``value``) to ``item_id``; received by the server at ``ts_ms``."""

    ts_ms: int
    unit_id: str
    metric: str
    value: float
    item_id: str
    event_ts_ms: int
    surface: str | None = None


def outcome_files(directory: Path, max_bytes: int = 64 << 20) -> RotatingFileWriter:
    return RotatingFileWriter(directory, prefix="outcomes", suffix=".jsonl", max_bytes=max_bytes)


def encode_outcome(event: OutcomeEvent) -> bytes:
    record = asdict(event)
    if event.surface is None:
        del record["surface"]
    return json_line(record)


class OutcomeLog:
    """Bounded, asynchronous outcome logging. ``start`` then ``offer`` then ``close``."""

    def __init__(
        self, writer: RotatingFileWriter, *, outcomes: Counter, dropped: Counter, queue_size: int = 10_000
    ) -> None:
        self._outcomes = outcomes
        self._dropped = dropped
        self._sink = BackgroundWriter(
            writer, encode_outcome, self._on_dropped, written=self._on_written, queue_size=queue_size
        )

    def start(self) -> None:
        self._sink.start()

    def offer(self, events: Iterable[OutcomeEvent]) -> None:
        """Queue ``events`` to be written; never blocks or raises (a full queue drops and counts)."""
        for event in events:
            self._sink.offer(event)

    async def close(self) -> None:
        """Write what is queued and close the file."""
        await self._sink.close()

    def _on_written(self, events: list[OutcomeEvent]) -> None:
        for metric, n in Tally(e.metric for e in events).items():
            self._outcomes.labels(metric).inc(n)

    def _on_dropped(self, reason: str, events: list[OutcomeEvent]) -> None:
        self._dropped.labels(reason).inc(len(events))
