"""Traffic capture for shadow replay: sampled Rank exchanges in length-delimited protobuf files.

The server samples a fraction of users — deterministically, ``gb_hash("capture", user_id) <
fraction``, so the captured cohort is stable across requests, restarts and workers — and, after
the response, writes one ``encore.v1.CapturedRank`` per sampled exchange through
``serving.logsink`` (bounded queue; a full queue or disk drops and counts, never blocks).

Files: ``<dir>/captures-<UTC start>-<pid>-<seq>.binpb``, each a sequence of messages framed by
a varint length prefix (protobuf's standard delimited format, readable by any protobuf runtime).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from common.errors import EncoreError
from encore.v1 import capture_pb2
from serving.experiments.hashing import gb_hash
from serving.logsink import RotatingFileWriter

CAPTURE_SEED = "capture"
SUFFIX = ".binpb"


class CaptureFormatError(EncoreError):
    """A capture file is truncated or corrupt; the message names the file and byte offset."""


def in_capture_sample(user_id: str, fraction: float) -> bool:
    """Whether ``user_id`` is in the captured cohort (stable for a given fraction)."""
    if fraction <= 0.0:
        return False
    n = gb_hash(CAPTURE_SEED, user_id, 2)
    return n is not None and n < fraction


def capture_files(directory: Path, max_bytes: int = 64 << 20) -> RotatingFileWriter:
    return RotatingFileWriter(directory, prefix="captures", suffix=SUFFIX, max_bytes=max_bytes)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_delimited(message: capture_pb2.CapturedRank) -> bytes:
    body = message.SerializeToString()
    return _varint(len(body)) + body


def read_delimited(path: Path) -> Iterator[capture_pb2.CapturedRank]:
    """Messages of one capture file, in order; ``CaptureFormatError`` on a truncated record."""
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        start, length, shift = offset, 0, 0
        while True:
            if offset >= len(data) or shift > 63:
                raise CaptureFormatError(f"{path}: truncated length prefix at byte {start}")
            byte = data[offset]
            offset += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if offset + length > len(data):
            raise CaptureFormatError(f"{path}: record at byte {start} needs {length} bytes, file ends first")
        message = capture_pb2.CapturedRank()
        try:
            message.ParseFromString(data[offset : offset + length])
        except Exception as exc:  # protobuf's DecodeError
            raise CaptureFormatError(f"{path}: record at byte {start} does not parse: {exc}") from exc
        offset += length
        yield message


def capture_paths(paths: Iterable[Path]) -> list[Path]:
    """Files given directly, plus every ``*.binpb`` under given directories, sorted by name."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob(f"*{SUFFIX}")))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such capture file or directory")
    return found


def read_captures(paths: Iterable[Path]) -> Iterator[capture_pb2.CapturedRank]:
    """Every captured exchange under ``paths``, file by file."""
    for path in capture_paths(paths):
        yield from read_delimited(path)
