"""Write-behind log files for side effects: a bounded queue drained by one task into rotating files.

Nothing here can block or fail a request: ``offer`` is a non-blocking ``put_nowait``; when the
queue is full, or the disk refuses a write (full disk, permissions), records are dropped and
reported through the ``dropped(reason, items)`` callback (``queue_full`` / ``write_error``);
``written(items)`` reports what reached the file. A failed write never leaves a partial record:
the file is cut back to its last whole record, so every file stays readable to the end.
Files are ``<dir>/<prefix>-<UTC start>-<pid>-<seq><suffix>``; a new one starts once a file
reaches ``max_bytes`` (a file never exceeds it by more than one record). ``json_line`` frames a
JSONL record (the exposure and outcome logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from common.errors import EncoreError

log = logging.getLogger(__name__)

T = TypeVar("T")


def json_line(record: Mapping[str, object]) -> bytes:
    """``record`` as one compact JSON object and a newline (a JSONL record)."""
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class WriteError(EncoreError, OSError):
    """A write failed after ``written`` of the records had reached a file (the rest did not)."""

    def __init__(self, written: int, cause: OSError) -> None:
        super().__init__(cause.errno, f"{cause.strerror or cause} ({written} records written first)")
        self.written = written


class RotatingFileWriter:
    """Appends framed records (bytes) to rotating files. Owned by one writer task.

    ``write_records`` either writes every record or raises ``WriteError`` saying how many (a
    prefix) were written; nothing of the failing record remains in the file.
    """

    def __init__(self, directory: Path, *, prefix: str, suffix: str, max_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self._prefix = prefix
        self._suffix = suffix
        self._max_bytes = max_bytes
        self._file: BinaryIO | None = None
        self._size = 0
        self._seq = 0
        self._stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    @property
    def current_path(self) -> Path | None:
        return None if self._file is None else Path(self._file.name)

    def write_records(self, records: list[bytes]) -> None:
        done = 0
        try:
            for record in records:
                if self._file is None or self._size >= self._max_bytes:
                    self._open_next()
                self._append(record)
                done += 1
        except OSError as exc:
            raise WriteError(done, exc) from exc

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _append(self, record: bytes) -> None:
        """One whole record or none: unbuffered writes, cut back on failure."""
        assert self._file is not None
        start = self._size
        view = memoryview(record)
        try:
            while view:
                n = self._file.write(view)
                if not n:
                    raise OSError(errno.ENOSPC, "short write")
                view = view[n:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), start)
                self._file.seek(start)
            raise
        self._size = start + len(record)

    def _open_next(self) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.directory / f"{self._prefix}-{self._stamp}-{os.getpid()}-{self._seq:05d}{self._suffix}"
        self._file = path.open("ab", buffering=0)  # unbuffered: a failed write is known at once
        self._size = path.stat().st_size


class BackgroundWriter(Generic[T]):
    """``offer`` items from the event loop; one task encodes and writes them in batches off the loop."""

    def __init__(
        self,
        writer: RotatingFileWriter,
        encode: Callable[[T], bytes],
        dropped: Callable[[str, list[T]], None],
        *,
        written: Callable[[list[T]], None] | None = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
    ) -> None:
        self._writer = writer
        self._encode = encode
        self._dropped = dropped
        self._written = written
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
            self._dropped("queue_full", [item])
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
                if self._written is not None:
                    self._written(batch)
            except OSError as exc:
                done = exc.written if isinstance(exc, WriteError) else 0
                if self._written is not None and done:
                    self._written(batch[:done])
                self._dropped("write_error", batch[done:])
                now = time.monotonic()
                if now - self._last_error_log > 10:
                    self._last_error_log = now
                    log.error(
                        "%d records dropped, cannot write to %s: %s", len(batch) - done, self._writer.directory, exc
                    )
            finally:
                for _ in batch:
                    self._queue.task_done()
