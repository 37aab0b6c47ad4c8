"""Arrow fast paths for the analysis readers (``offline.experiments.outcome_logs`` owns the contract).

``read_jsonl_table`` parses a JSONL log with ``pyarrow.json`` and returns its required columns, or
``None`` whenever it cannot vouch that the result equals the line reader's (the caller then reads
the file line by line, which also locates every problem). It vouches only when all of these hold:
the file decompresses and parses; the bytes are valid UTF-8 without a leading BOM; there is exactly
one record per line (no blank lines, no two objects on a line, no object split over lines — checked
by counting, see the note below); required fields are non-null and non-empty; ``ts_ms >= 0`` and
integral in the text; ``value`` is finite and null only where absent (a file whose ``value`` column
has nulls and whose text holds ``null`` anywhere goes to the line reader). Duplicate keys, wrong
JSON types and unparsable numbers make Arrow fail, so those files go to the line reader too.

Note: the one-record-per-line check compares the row count with the line count, so it cannot see
a file in which lines holding two objects are exactly offset by blank lines or split objects;
every such line is malformed for the line reader, which would report it.

``read_parquet_table`` reads the kind's columns of a Parquet file, cast to the log schema
(``value`` absent → all null); ``invalid_rows`` flags rows that break the record rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

__all__ = ["EXPOSURE_SCHEMA", "OUTCOME_SCHEMA", "Kind", "invalid_rows", "read_jsonl_table", "read_parquet_table"]

Kind = Literal["exposures", "outcomes"]

EXPOSURE_SCHEMA: Final[pa.Schema] = pa.schema(
    [("ts_ms", pa.int64()), ("unit_id", pa.string()), ("experiment", pa.string()), ("variant", pa.string())]
)
OUTCOME_SCHEMA: Final[pa.Schema] = pa.schema(
    [("ts_ms", pa.int64()), ("unit_id", pa.string()), ("metric", pa.string()), ("value", pa.float64())]
)
_GZIP_MAGIC: Final[bytes] = b"\x1f\x8b"
_BOM: Final[bytes] = b"\xef\xbb\xbf"
_BLOCK_BYTES: Final[int] = 8 << 20


def schema_of(kind: Kind) -> pa.Schema:
    """The columns (and Arrow types) a log of ``kind`` is read into."""
    return EXPOSURE_SCHEMA if kind == "exposures" else OUTCOME_SCHEMA


def _required(kind: Kind) -> tuple[str, ...]:
    return ("ts_ms", "unit_id", "experiment", "variant") if kind == "exposures" else ("ts_ms", "unit_id", "metric")


def _file_bytes(path: Path) -> bytes | None:
    """The decompressed content (gzip by magic bytes), or None when it cannot be read whole."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
        if magic != _GZIP_MAGIC:
            return path.read_bytes()
        with pa.CompressedInputStream(pa.OSFile(str(path)), "gzip") as stream:
            data: bytes = stream.read()
            return data
    except (OSError, pa.ArrowException):
        return None


def _valid_utf8(buffer: pa.Buffer) -> bool:
    offsets = pa.py_buffer(np.array([0, buffer.size], dtype=np.int64).tobytes())
    try:
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, buffer]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def read_jsonl_table(path: Path, kind: Kind) -> pa.Table | None:
    """``path``'s required columns (``value`` nulls filled with 1.0), or None to use the line reader."""
    data = _file_bytes(path)
    if data is None or not data or data.startswith(_BOM):
        return None
    lines = data.count(b"\n") + (data[-1:] != b"\n")
    buffer = pa.py_buffer(data)
    if not _valid_utf8(buffer):
        return None
    schema = schema_of(kind)
    try:
        table = pajson.read_json(
            pa.BufferReader(buffer),
            read_options=pajson.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except pa.ArrowException:
        return None
    if table.num_rows != lines:
        return None
    table = table.select(schema.names)
    if kind == "outcomes":
        value = table.column("value")
        if value.null_count and b"null" in data:
            return None
        table = table.set_column(3, "value", value.fill_null(1.0))
    if invalid_rows(table, kind).true_count:
        return None
    return table


def read_parquet_table(path: Path, kind: Kind) -> pa.Table:
    """``path``'s columns of ``kind`` cast to the log schema; raises ``ValueError`` naming the problem.

    ``pyarrow`` errors (not Parquet, unreadable) propagate as ``pa.ArrowException`` / ``OSError``.
    """
    schema = schema_of(kind)
    present = set(pq.read_schema(path).names)
    missing = [name for name in _required(kind) if name not in present]
    if missing:
        raise ValueError(f"Parquet file lacks column(s) {', '.join(missing)}")
    names = [name for name in schema.names if name in present]
    table = pq.read_table(path, columns=names)
    columns = []
    for field in schema:
        if field.name not in present:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"column {field.name} is {column.type}, not {field.type}: {exc}") from exc
    return pa.Table.from_arrays(columns, schema=schema)


def invalid_rows(table: pa.Table, kind: Kind) -> pa.BooleanArray:
    """Rows breaking the record rules (null ``value`` is allowed: it means absent, default 1.0)."""
    ts = table.column("ts_ms")
    bad = pc.or_kleene(pc.is_null(ts), pc.less(ts, 0))
    for name in _required(kind)[1:]:
        column = table.column(name)
        bad = pc.or_kleene(bad, pc.or_kleene(pc.is_null(column), pc.equal(pc.binary_length(column), 0)))
    if kind == "outcomes":
        bad = pc.or_kleene(bad, pc.invert(pc.is_finite(table.column("value"))))
    filled = pc.fill_null(bad, False)
    return filled.combine_chunks() if isinstance(filled, pa.ChunkedArray) else filled
