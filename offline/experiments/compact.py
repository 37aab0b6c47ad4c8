"""Compaction: closed JSONL exposure/outcome logs → one Parquet file each, for fast repeated analysis.

``compact_logs(src, dest)`` mirrors ``src``'s tree: ``src/a/x.jsonl.3.gz`` → ``dest/a/x.jsonl.3.gz.parquet``
(columns of ``offline.experiments.columnar.schema_of(kind)``, zstd, ``value`` filled). Sources are
files whose name contains ``.jsonl`` (hidden files skipped), read exactly as ``load_exposures`` /
``load_outcomes`` read them: with ``strict=True`` a malformed line raises ``AnalysisInputError``
(nothing is written for that file); with ``strict=False`` it is skipped and counted.

- **Closed files only.** A file modified less than ``min_age_s`` ago may still be appended to by
  the server; it is left alone (``open``).
- **Idempotent.** Each Parquet file records its source's size and mtime; a source whose Parquet
  matches is ``current`` and not read again; one that has changed since (grown) is converted again.
- **Atomic.** Written to a hidden temp file in the destination directory, fsynced, then renamed:
  a reader sees the old Parquet or the new one, never a partial one; a crash leaves a hidden temp
  file that readers skip.

The kind of each file (``exposures`` or ``outcomes``) is ``kind``, else read from its first record
(``metric`` → outcomes, ``experiment`` → exposures). ``dest`` must not lie inside ``src``.
``load_exposures(dest)`` then reads the Parquet files (a directory search also finds ``*.parquet``).

**Partitioned by date** (``partition_by_date=True``): each source's rows are split by the UTC day
of ``ts_ms`` into ``dest/date=YYYY-MM-DD/<relative path of the source>.parquet`` (Hive-style, so
Spark and other engines can prune by day; rows keep their order). The source's size and mtime
then live in a hidden manifest ``dest/<relative dir>/.<name>.partitions.json``, which makes reruns
idempotent. Each partition file is replaced atomically; a reader during a rerun of a grown source
may see some days old and some new, never a row twice.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from offline.experiments.columnar import Kind
from offline.experiments.outcome_logs import AnalysisInputError, read_log_table

__all__ = ["CompactEvent", "CompactSummary", "compact_logs"]

Action = Literal["converted", "current", "open", "empty"]
_META_SIZE: Final[bytes] = b"encore.source_size"
_META_MTIME: Final[bytes] = b"encore.source_mtime_ns"
_PROBE_LINES: Final[int] = 100
_DAY_MS: Final[int] = 86_400_000


@dataclass(frozen=True)
class CompactEvent:
    """One source file's fate, passed to ``progress`` as it happens.

    ``converted``: written now (``rows`` kept, ``skipped_lines`` dropped); ``current``: its Parquet
    is up to date; ``open``: modified too recently; ``empty``: no record to tell its kind by.
    """

    source: Path
    dest: Path
    action: Action
    rows: int
    skipped_lines: int
    seconds: float


@dataclass(frozen=True)
class CompactSummary:
    """Totals of one ``compact_logs`` run; ``problems`` are the first skipped lines (``path:line: ...``)."""

    converted: int
    current: int
    open: int
    empty: int
    rows: int
    skipped_lines: int
    problems: tuple[str, ...]


def compact_logs(
    src_dir: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    kind: Kind | None = None,
    strict: bool = True,
    min_age_s: float = 60.0,
    progress: Callable[[CompactEvent], None] | None = None,
    partition_by_date: bool = False,
) -> CompactSummary:
    """Convert the closed JSONL logs under ``src_dir`` to Parquet under ``dest_dir`` (module docstring)."""
    src, dest = Path(src_dir), Path(dest_dir)
    if not src.is_dir():
        raise AnalysisInputError("not a directory", path=str(src))
    if dest.resolve().is_relative_to(src.resolve()):
        raise ValueError(f"dest_dir {dest} must not be inside src_dir {src}")
    sources = sorted(
        p
        for p in src.rglob("*")
        if ".jsonl" in p.name and not p.name.startswith(".") and not p.name.endswith(".parquet") and p.is_file()
    )
    counts = dict.fromkeys(("converted", "current", "open", "empty"), 0)
    rows = skipped = 0
    problems: list[str] = []
    now = time.time()
    for source in sources:
        started = time.perf_counter()
        relative = source.relative_to(src)
        target = dest / relative.parent / (source.name + ".parquet")
        manifest = dest / relative.parent / f".{source.name}.partitions.json"
        stat = source.stat()
        action: Action
        n_rows = n_skipped = 0
        if _is_current(manifest if partition_by_date else target, stat):
            action = "current"
        elif now - stat.st_mtime < min_age_s:
            action = "open"
        else:
            file_kind = kind or _detect_kind(source)
            if file_kind is None:
                action = "empty"
            else:
                table, read = read_log_table([source], file_kind, strict=strict)
                meta = {
                    b"encore.kind": file_kind.encode(),
                    b"encore.source": source.name.encode(),
                    _META_SIZE: str(stat.st_size).encode(),
                    _META_MTIME: str(stat.st_mtime_ns).encode(),
                    b"encore.skipped_lines": str(read.skipped).encode(),
                }
                if partition_by_date:
                    _write_partitions(table.replace_schema_metadata(meta), dest, relative, manifest, stat)
                else:
                    _write_atomically(table.replace_schema_metadata(meta), target)
                action, n_rows, n_skipped = "converted", read.records, read.skipped
                problems.extend(read.problems[: max(0, 10 - len(problems))])
        counts[action] += 1
        rows += n_rows
        skipped += n_skipped
        if progress is not None:
            progress(CompactEvent(source, target, action, n_rows, n_skipped, time.perf_counter() - started))
    return CompactSummary(
        converted=counts["converted"],
        current=counts["current"],
        open=counts["open"],
        empty=counts["empty"],
        rows=rows,
        skipped_lines=skipped,
        problems=tuple(problems),
    )


def _is_current(target: Path, stat: os.stat_result) -> bool:
    """Whether ``target`` (a Parquet file or a partition manifest) exists and was made from a source
    of this size and mtime."""
    if target.name.endswith(".partitions.json"):
        try:
            made = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(made, dict) and made.get("size") == stat.st_size and made.get("mtime_ns") == stat.st_mtime_ns
    try:
        meta = pq.read_schema(target).metadata or {}
    except Exception:  # absent, or not a readable Parquet file: convert (again)
        return False
    return (
        meta.get(_META_SIZE) == str(stat.st_size).encode() and meta.get(_META_MTIME) == str(stat.st_mtime_ns).encode()
    )


def _detect_kind(path: Path) -> Kind | None:
    """``outcomes`` / ``exposures`` from the first JSON object among the first lines; None if blank."""
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as fh:
            seen_content = False
            for _, raw in zip(range(_PROBE_LINES), fh, strict=False):
                if raw.isspace():
                    continue
                seen_content = True
                with contextlib.suppress(ValueError):
                    record = json.loads(raw)
                    if isinstance(record, dict) and "metric" in record:
                        return "outcomes"
                    if isinstance(record, dict) and "experiment" in record:
                        return "exposures"
    except (OSError, EOFError) as exc:
        raise AnalysisInputError(f"unreadable: {exc}", path=str(path)) from exc
    if not seen_content:
        return None
    raise AnalysisInputError("cannot tell exposures from outcomes; pass kind", path=str(path))


def _write_atomically(table: pa.Table, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temp, compression="zstd")
        with temp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _write_partitions(table: pa.Table, dest: Path, relative: Path, manifest: Path, stat: os.stat_result) -> None:
    """One Parquet file per UTC day of ``ts_ms`` under ``dest/date=YYYY-MM-DD/``, then the manifest."""
    days = pc.divide(table.column("ts_ms"), pa.scalar(_DAY_MS, pa.int64()))  # ts_ms >= 0: floor division
    written = []
    for day in sorted(set(days.to_pylist())):
        part = table.filter(pc.equal(days, day))
        name = f"date={np.datetime64(int(day), 'D')}"
        target = dest / name / relative.parent / (relative.name + ".parquet")
        _write_atomically(part, target)
        written.append(str(target.relative_to(dest)))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    temp = manifest.with_name(f"{manifest.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "files": written}), "utf-8")
    os.replace(temp, manifest)
