"""Write-behind log files for side effects: a bounded queue drained by one task into rotating files.

Nothing here can block or fail a request: ``offer`` is a non-blocking ``put_nowait``; when the
queue is full, or the disk refuses a write (full disk, permissions), records are dropped and
reported through the ``dropped(reason, count)`` callback (``queue_full`` / ``write_error``).
Files are ``<dir>/<prefix>-<UTC start>-<pid>-<seq><suffix>``; a new one starts once a file
reaches ``max_bytes`` (a file never exceeds it by more than one record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class RotatingFileWriter:
    """Appends framed records (bytes) to rotating files. Owned by one writer task; raises ``OSError``."""

    def __init__(self, directory: Path, *, prefix: str, suffix: str, max_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self._prefix = prefix
        self._suffix = suffix
        self._max_bytes = max_bytes
        self._file: IO[bytes] | None = None
        self._size = 0
        self._seq = 0
        self._stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    @property
    def current_path(self) -> Path | None:
        return None if self._file is None else Path(self._file.name)

    def write_records(self, records: list[bytes]) -> None:
        chunk: list[bytes] = []
        for record in records:
            if self._file is None or self._size >= self._max_bytes:
                self._flush(chunk)
                self._open_next()
            chunk.append(record)
            self._size += len(record)
        self._flush(chunk)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _flush(self, chunk: list[bytes]) -> None:
        if chunk and self._file is not None:
            self._file.write(b"".join(chunk))
            self._file.flush()
            chunk.clear()

    def _open_next(self) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.directory / f"{self._prefix}-{self._stamp}-{os.getpid()}-{self._seq:05d}{self._suffix}"
        self._file = path.open("ab")
        self._size = path.stat().st_size


class BackgroundWriter(Generic[T]):
    """``offer`` items from the event loop; one task encodes and writes them in batches off the loop."""

    def __init__(
        self,
        writer: RotatingFileWriter,
        encode: Callable[[T], bytes],
        dropped: Callable[[str, int], None],
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
    ) -> None:
        self._writer = writer
        self._encode = encode
        self._dropped = dropped
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None
        self._last_error_log = 0.0

    @property
    def directory(self) -> Path:
        return self._writer.directory

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"writer:{self._writer.directory}")

    def offer(self, item: T) -> bool:
        """Queue ``item``; False (and counted as ``queue_full``) when the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._dropped("queue_full", 1)
            return False
        return True

    async def close(self) -> None:
        """Write what is queued, stop the task and close the file."""
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
            try:
                records = [self._encode(item) for item in batch]
                await asyncio.to_thread(self._writer.write_records, records)
            except OSError as exc:
                self._dropped("write_error", len(batch))
                now = time.monotonic()
                if now - self._last_error_log > 10:
                    self._last_error_log = now
                    log.error("%d records dropped, cannot write to %s: %s", len(batch), self._writer.directory, exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
