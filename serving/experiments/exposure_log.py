"""Exposure log: one JSON line per (unit, experiment) when a user is really in an experiment.

Events are offered from the request path with a non-blocking ``put_nowait`` onto a bounded queue;
a background task writes them in batches, off the event loop, to rotating JSONL files. Nothing
here can block or fail a request: a full queue or a failed write (full disk, permissions) drops
the events and counts them by reason (``encore_exposures_dropped_total``), never silently.

Line format (what ``encore experiments analyze`` reads)::

    {"ts_ms": 1763870000123, "unit_id": "u42", "experiment": "home-ranker-lite", "variant": "lite",
     "surface": "home", "request_id": "...", "model_version": "lgbm-v1-lite", "bundle_version": "..."}

Files: ``<dir>/exposures-<UTC start>-<pid>-<seq>.jsonl``, a new one after ``max_bytes``.
Dedupe is per process and bounded (an LRU of recent (unit, experiment) pairs); the analysis
dedupes again, so a restart that logs a unit twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from prometheus_client import Counter

from ranking.side_effects.exposure_log import ExposureEvent

log = logging.getLogger(__name__)


class RotatingJsonlWriter:
    """Appends lines to ``exposures-*.jsonl`` files in ``directory``, rotating at ``max_bytes``.

    Not thread-safe: one writer task owns it. Raises ``OSError`` when the disk refuses a write.
    """

    def __init__(self, directory: Path, *, prefix: str = "exposures", max_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self._prefix = prefix
        self._max_bytes = max_bytes
        self._file: IO[str] | None = None
        self._size = 0
        self._seq = 0
        self._stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    @property
    def current_path(self) -> Path | None:
        return None if self._file is None else Path(self._file.name)

    def write_lines(self, lines: list[str]) -> None:
        """Append ``lines`` (each ending in a newline); a file never grows past ``max_bytes``
        by more than one line."""
        chunk: list[str] = []
        for line in lines:
            if self._file is None or self._size >= self._max_bytes:
                self._flush(chunk)
                self._open_next()
            chunk.append(line)
            self._size += len(line.encode())
        self._flush(chunk)

    def _flush(self, chunk: list[str]) -> None:
        if chunk and self._file is not None:
            self._file.write("".join(chunk))
            self._file.flush()
            chunk.clear()

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _open_next(self) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.directory / f"{self._prefix}-{self._stamp}-{os.getpid()}-{self._seq:05d}.jsonl"
        self._file = path.open("a", encoding="utf-8")
        self._size = path.stat().st_size


class ExposureLog:
    """Bounded, deduplicated, asynchronous exposure logging. ``start`` then ``offer`` then ``close``."""

    def __init__(
        self,
        writer: RotatingJsonlWriter,
        *,
        exposures: Counter,
        dropped: Counter,
        queue_size: int = 10_000,
        dedupe_size: int = 1_000_000,
        batch_size: int = 500,
    ) -> None:
        self._writer = writer
        self._queue: asyncio.Queue[ExposureEvent] = asyncio.Queue(maxsize=queue_size)
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._dedupe_size = dedupe_size
        self._batch_size = batch_size
        self._exposures = exposures
        self._dropped = dropped
        self._task: asyncio.Task[None] | None = None
        self._last_error_log = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="exposure-log-writer")

    def offer(self, events: Iterable[ExposureEvent]) -> None:
        """Queue events not logged before for their (unit, experiment); never blocks or raises."""
        for event in events:
            key = (event.unit_id, event.experiment)
            if key in self._seen:
                self._seen.move_to_end(key)
                continue
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                self._dropped.labels("queue_full").inc()
                continue
            self._seen[key] = None
            if len(self._seen) > self._dedupe_size:
                self._seen.popitem(last=False)
            self._exposures.labels(event.experiment, event.variant).inc()

    async def close(self) -> None:
        """Write what is queued, then stop the writer task and close the file."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._writer.close()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            lines = [json.dumps(asdict(e), separators=(",", ":")) + "\n" for e in batch]
            try:
                await asyncio.to_thread(self._writer.write_lines, lines)
            except OSError as exc:
                self._dropped.labels("write_error").inc(len(batch))
                now = time.monotonic()
                if now - self._last_error_log > 10:
                    self._last_error_log = now
                    log.error(
                        "exposure log: %d events dropped, cannot write to %s: %s",
                        len(batch),
                        self._writer.directory,
                        exc,
                    )
            finally:
                for _ in batch:
                    self._queue.task_done()
