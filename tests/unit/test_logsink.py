"""The rotating writer never leaves a partial record, and reports how many records it wrote."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from serving.logsink import RotatingFileWriter, WriteError


class ShortDisk:
    """A file object whose disk fills after ``room`` bytes: partial write, then ENOSPC."""

    def __init__(self, real: Any, room: int) -> None:
        self._real = real
        self._room = room

    def write(self, data: memoryview) -> int:
        if self._room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self._real.write(data[: self._room])
        self._room -= n
        return int(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_full_disk_mid_record_leaves_only_whole_records(tmp_path: Path) -> None:
    writer = RotatingFileWriter(tmp_path, prefix="log", suffix=".txt")
    writer.write_records([b"first\n"])
    path = writer.current_path
    assert path is not None
    writer._file = ShortDisk(writer._file, room=9)  # type: ignore[assignment]  # "second\n" fits, "third\n" half
    with pytest.raises(WriteError) as caught:
        writer.write_records([b"second\n", b"third\n", b"fourth\n"])
    assert caught.value.written == 1
    writer.close()
    assert path.read_bytes() == b"first\nsecond\n"


def test_rotation_keeps_every_record_whole(tmp_path: Path) -> None:
    writer = RotatingFileWriter(tmp_path, prefix="log", suffix=".txt", max_bytes=20)
    writer.write_records([f"record-{i:03d}\n".encode() for i in range(10)])
    writer.close()
    files = sorted(tmp_path.glob("log-*.txt"))
    assert len(files) == 5
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert lines == [f"record-{i:03d}" for i in range(10)]
