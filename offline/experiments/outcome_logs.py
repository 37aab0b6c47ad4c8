"""Reading exposure and outcome logs (JSON Lines or Parquet) into columnar arrays for offline analysis.

Formats, one JSON object per line (extra fields are ignored)::

    exposure: {"ts_ms": 1763870000123, "unit_id": "u42", "experiment": "home-ranker-lite",
               "variant": "lite", ...}
    outcome:  {"ts_ms": 1763870001000, "unit_id": "u42", "metric": "stream", "value": 1.0}

``ts_ms`` is an integer (an integral float is accepted); string fields are non-empty; an outcome's
``value`` is optional (default 1.0) and, when present, a finite number. Blank lines are ignored.
A Parquet file holds the same columns (others ignored; ``value`` optional); a null cell counts as
an absent field and row ``N`` (1-based) is reported as line ``N``. ``offline.experiments.compact``
writes such files from closed JSONL logs.

A path is a file (read whatever its name; gzip and Parquet are detected by their magic bytes, not
the suffix) or a directory, searched recursively for files whose name contains ``.jsonl``
(``a.jsonl``, ``a.jsonl.gz``, rotated ``a.jsonl.1`` / ``a.jsonl.2025-11-23.gz``) or ends with
``.parquet``, hidden files skipped, read in sorted path order. A file named twice is read once.

A malformed line raises ``AnalysisInputError`` naming the file and line number; with
``strict=False`` it is skipped and counted in ``ReadStats`` instead. Unreadable files (missing,
corrupt gzip or Parquet, a Parquet file without a required column) always raise.

Speed: with ``columnar=True`` (the default) each JSONL file is parsed by Arrow's C++ JSON reader
(``offline.experiments.columnar``) and strings are dictionary-encoded in C++; ``unit_ids`` is then
a ``pyarrow`` string array, never millions of Python strings. A file the fast path cannot vouch
for (any malformed line, blank lines, integral floats as ``ts_ms``, ...) is re-read by the Python
line reader, so errors, skip counts and results are the same either way: only the speed and the
type of ``unit_ids`` (a tuple with ``columnar=False`` or from ``from_records``) differ. Codes are
dense, in first-seen order over all files in read order.

Exceptions::

    serving.experiments.config.ExperimentError
    └── AnalysisInputError     bad analysis input; .path and .line locate it (either may be None)

``AnalysisInputError`` derives from ``ExperimentError`` (the only thing this module takes from the
config module), so ``encore experiments analyze`` reports a bad log and a bad config through the
same handler.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from offline.experiments.columnar import Kind, invalid_rows, read_jsonl_table, read_parquet_table, schema_of
from serving.experiments.config import ExperimentError

__all__ = [
    "AnalysisInputError",
    "Exposures",
    "Outcomes",
    "ReadStats",
    "UnitIds",
    "codes_in",
    "expand_paths",
    "load_exposures",
    "load_outcomes",
    "read_log_table",
]

MAX_REPORTED_PROBLEMS: Final[int] = 10
"""How many skipped-line messages ``ReadStats.problems`` keeps (the count is always exact)."""

_GZIP_MAGIC: Final[bytes] = b"\x1f\x8b"
_PARQUET_MAGIC: Final[bytes] = b"PAR1"
_RECORDS: Final[str] = "<records>"
_TS_LIMIT: Final[int] = 2**63
_DECODER: Final[json.JSONDecoder] = json.JSONDecoder()

PathArg = str | os.PathLike[str]
UnitIds: TypeAlias = Sequence[str] | pa.Array
"""Unit ids by code: a tuple (records, the line reader) or an Arrow string array (the columnar reader)."""


class AnalysisInputError(ExperimentError):
    """An analysis input is unusable; the message reads ``path:line: problem``."""

    def __init__(self, problem: str, *, path: str | None = None, line: int | None = None) -> None:
        location = "" if path is None else (path if line is None else f"{path}:{line}")
        super().__init__(f"{location}: {problem}" if location else problem)
        self.problem = problem
        self.path = path
        self.line = line


class _BadLine(Exception):
    """A line's content is malformed; carries the problem without its location."""


@dataclass(frozen=True)
class ReadStats:
    """What reading produced: files read, records accepted, malformed lines skipped."""

    files: int
    records: int
    skipped: int
    problems: tuple[str, ...]
    """The first ``MAX_REPORTED_PROBLEMS`` skipped lines as ``path:line: problem``."""


@dataclass(frozen=True, eq=False)
class Exposures:
    """Columnar exposure log in read order (the order breaks ``ts_ms`` ties).

    Row ``i``: unit ``unit_ids[unit[i]]`` was exposed to ``experiments[experiment[i]]``, variant
    ``variants[variant[i]]``, at ``ts_ms[i]``. Duplicates are kept; ``analyze`` dedupes.
    """

    ts_ms: NDArray[np.int64]
    unit: NDArray[np.intp]
    experiment: NDArray[np.intp]
    variant: NDArray[np.intp]
    unit_ids: UnitIds
    experiments: tuple[str, ...]
    variants: tuple[str, ...]
    read: ReadStats

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, object]], *, strict: bool = True) -> Exposures:
        """Build from in-memory records (same validation as files; location ``<records>:N``)."""
        builder = _ExposureBuilder()
        _consume(((_RECORDS, i, r) for i, r in enumerate(records, 1)), builder.add, builder.stats, strict)
        return builder.build(files=0)


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Columnar outcome log: ``unit_ids[unit[i]]`` did ``metrics[metric[i]]`` worth ``value[i]``."""

    ts_ms: NDArray[np.int64]
    unit: NDArray[np.intp]
    metric: NDArray[np.intp]
    value: NDArray[np.float64]
    unit_ids: UnitIds
    metrics: tuple[str, ...]
    read: ReadStats

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, object]], *, strict: bool = True) -> Outcomes:
        """Build from in-memory records (same validation as files; location ``<records>:N``)."""
        builder = _OutcomeBuilder()
        _consume(((_RECORDS, i, r) for i, r in enumerate(records, 1)), builder.add, builder.stats, strict)
        return builder.build(files=0)


def codes_in(values: UnitIds, value_set: UnitIds) -> NDArray[np.intp]:
    """For each of ``values``, its position in ``value_set`` (-1 when absent); a C++ hash join."""
    found = pc.index_in(_arrow_strings(values), value_set=_arrow_strings(value_set))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.intp)


def _arrow_strings(ids: UnitIds) -> pa.Array:
    return ids if isinstance(ids, pa.Array) else pa.array(list(ids), type=pa.string())


def expand_paths(paths: Iterable[PathArg]) -> list[Path]:
    """Files to read for ``paths`` (see the module docstring); raises if one is missing or empty."""
    files: list[Path] = []
    seen: set[Path] = set()
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _is_log_name(p.name) and p.is_file())
            if not found:
                raise AnalysisInputError("directory holds no *.jsonl files and no *.parquet files", path=str(path))
        elif path.is_file():
            found = [path]
        else:
            raise AnalysisInputError("no such file or directory", path=str(path))
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    if not files:
        raise AnalysisInputError("no input paths given")
    return files


def _is_log_name(name: str) -> bool:
    return not name.startswith(".") and (".jsonl" in name or name.endswith(".parquet"))


def load_exposures(paths: Iterable[PathArg], *, strict: bool = True, columnar: bool = True) -> Exposures:
    """Read exposure logs from files/directories (see the module docstring).

    ``columnar=False`` reads every record in Python (the reference; ``unit_ids`` is then a tuple).
    """
    files = expand_paths(paths)
    if not columnar:
        builder = _ExposureBuilder()
        _consume(_records(files, "exposures"), builder.add, builder.stats, strict)
        return builder.build(files=len(files))
    table, stats = _read_tables(files, "exposures", strict)
    unit, unit_ids = _encode(table.column("unit_id"))
    experiment, experiments = _encode(table.column("experiment"))
    variant, variants = _encode(table.column("variant"))
    return Exposures(
        ts_ms=_numpy(table.column("ts_ms"), np.int64),
        unit=unit,
        experiment=experiment,
        variant=variant,
        unit_ids=unit_ids,
        experiments=tuple(experiments.to_pylist()),
        variants=tuple(variants.to_pylist()),
        read=stats.freeze(len(files), table.num_rows),
    )


def load_outcomes(paths: Iterable[PathArg], *, strict: bool = True, columnar: bool = True) -> Outcomes:
    """Read outcome logs from files/directories (see the module docstring and ``load_exposures``)."""
    files = expand_paths(paths)
    if not columnar:
        builder = _OutcomeBuilder()
        _consume(_records(files, "outcomes"), builder.add, builder.stats, strict)
        return builder.build(files=len(files))
    table, stats = _read_tables(files, "outcomes", strict)
    unit, unit_ids = _encode(table.column("unit_id"))
    metric, metrics = _encode(table.column("metric"))
    return Outcomes(
        ts_ms=_numpy(table.column("ts_ms"), np.int64),
        unit=unit,
        metric=metric,
        value=_numpy(table.column("value"), np.float64),
        unit_ids=unit_ids,
        metrics=tuple(metrics.to_pylist()),
        read=stats.freeze(len(files), table.num_rows),
    )


def read_log_table(paths: Iterable[PathArg], kind: Kind, *, strict: bool = True) -> tuple[pa.Table, ReadStats]:
    """The valid records of ``paths`` as an Arrow table (``columnar.schema_of(kind)``, ``value`` filled).

    Same files, validation and errors as ``load_exposures`` / ``load_outcomes``; rows in read order.
    """
    files = expand_paths(paths)
    table, stats = _read_tables(files, kind, strict)
    return table, stats.freeze(len(files), table.num_rows)


# --- columnar reading ----------------------------------------------------------------------------


def _read_tables(files: list[Path], kind: Kind, strict: bool) -> tuple[pa.Table, _Stats]:
    """Every file's valid rows, concatenated; the fast path per file, else the line reader."""
    stats = _Stats()
    tables: list[pa.Table] = []
    for path in files:
        if _is_parquet(path):
            tables.append(_parquet_table(path, kind, strict, stats))
            continue
        table = read_jsonl_table(path, kind)
        if table is None:
            builder = _ExposureBuilder(stats) if kind == "exposures" else _OutcomeBuilder(stats)
            _consume(_json_lines([path]), builder.add, stats, strict)
            table = builder.table()
        tables.append(table)
    return (pa.concat_tables(tables) if tables else schema_of(kind).empty_table()), stats


def _encode(column: pa.ChunkedArray) -> tuple[NDArray[np.intp], pa.Array]:
    """Dense codes (first-seen order) and the distinct values; one C++ hash pass."""
    encoded = column.dictionary_encode()
    if encoded.num_chunks == 0:
        return np.empty(0, dtype=np.intp), pa.array([], type=column.type)
    codes = [np.asarray(chunk.indices.to_numpy(zero_copy_only=False)) for chunk in encoded.chunks]
    return np.concatenate(codes).astype(np.intp, copy=False), encoded.chunk(encoded.num_chunks - 1).dictionary


def _numpy(column: pa.ChunkedArray, dtype: type[np.generic]) -> NDArray[Any]:
    if column.num_chunks == 0:
        return np.empty(0, dtype=dtype)
    return np.asarray(column.to_numpy(), dtype=dtype)


def _is_parquet(path: Path) -> bool:
    try:
        with path.open("rb") as probe:
            return probe.read(4) == _PARQUET_MAGIC
    except OSError as exc:
        raise AnalysisInputError(f"cannot open: {exc.strerror or exc}", path=str(path)) from exc


def _parquet_columns(path: Path, kind: Kind) -> pa.Table:
    try:
        return read_parquet_table(path, kind)
    except (OSError, pa.ArrowException) as exc:  # before ValueError: ArrowInvalid is one
        raise AnalysisInputError(f"unreadable Parquet file: {exc}", path=str(path)) from exc
    except ValueError as exc:
        raise AnalysisInputError(str(exc), path=str(path)) from None


def _parquet_table(path: Path, kind: Kind, strict: bool, stats: _Stats) -> pa.Table:
    """Valid rows of a Parquet file; bad rows raise (strict) or are skipped and counted."""
    table = _parquet_columns(path, kind)
    bad = invalid_rows(table, kind)
    if bad.true_count:
        name = str(path)
        rows = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
        # The messages come from the record validation itself, so they read as for JSONL lines.
        check = (_ExposureBuilder() if kind == "exposures" else _OutcomeBuilder()).add
        for row in rows[: 1 if strict else max(0, MAX_REPORTED_PROBLEMS - len(stats.problems))].tolist():
            problem = "invalid row"
            try:
                check(_row_record(table, row))
            except _BadLine as exc:
                problem = str(exc)
            if strict:
                raise AnalysisInputError(problem, path=name, line=row + 1)
            stats.problems.append(f"{name}:{row + 1}: {problem}")
        stats.skipped += int(rows.shape[0])
        table = table.filter(pc.invert(bad))
    if kind == "outcomes":
        table = table.set_column(3, "value", table.column("value").fill_null(1.0))
    return table


def _row_record(table: pa.Table, row: int) -> dict[str, object]:
    """Row ``row`` as a record; a null cell is an absent field."""
    values: dict[str, object] = table.slice(row, 1).to_pylist()[0]
    return {key: value for key, value in values.items() if value is not None}


def _records(files: list[Path], kind: Kind) -> Iterator[tuple[str, int, object]]:
    """Every file's records for the Python reader: JSON lines, or Parquet rows as records."""
    for path in files:
        if _is_parquet(path):
            table = _parquet_columns(path, kind)
            name = str(path)
            for row in range(table.num_rows):
                yield name, row + 1, _row_record(table, row)
        else:
            yield from _json_lines([path])


# --- reading -------------------------------------------------------------------------------------


def _open(path: Path) -> io.BufferedIOBase:
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == _GZIP_MAGIC:
            return gzip.GzipFile(path, "rb")
        return path.open("rb")
    except OSError as exc:
        raise AnalysisInputError(f"cannot open: {exc.strerror or exc}", path=str(path)) from exc


def _json_lines(files: list[Path]) -> Iterator[tuple[str, int, object]]:
    """Yield ``(path, line_no, parsed_or_BadLine)`` for each non-blank line of each file."""
    for path in files:
        name = str(path)
        line_no = 0
        with _open(path) as fh:
            try:
                for line_no, raw in enumerate(fh, 1):
                    if raw.isspace():
                        continue
                    try:
                        yield name, line_no, _DECODER.decode(raw.decode("utf-8"))
                    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                        yield name, line_no, _BadLine(f"not valid JSON ({_short(str(exc), 80)})")
            except (OSError, EOFError) as exc:  # corrupt or truncated gzip stream
                raise AnalysisInputError(f"unreadable after line {line_no}: {exc}", path=name) from exc


def _consume(
    items: Iterable[tuple[str, int, object]],
    add: Callable[[object], None],
    stats: _Stats,
    strict: bool,
) -> None:
    for path, line_no, item in items:
        try:
            if isinstance(item, _BadLine):
                raise item
            add(item)
        except _BadLine as exc:
            if strict:
                raise AnalysisInputError(str(exc), path=path, line=line_no) from None
            stats.skipped += 1
            if len(stats.problems) < MAX_REPORTED_PROBLEMS:
                stats.problems.append(f"{path}:{line_no}: {exc}")


# --- validation and columnar building ------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.skipped = 0
        self.problems: list[str] = []

    def freeze(self, files: int, records: int) -> ReadStats:
        return ReadStats(files=files, records=records, skipped=self.skipped, problems=tuple(self.problems))


class _Vocab:
    """Interns strings to dense integer codes in first-seen order."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def code(self, value: str) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.codes)
        return code

    def names(self) -> tuple[str, ...]:
        return tuple(self.codes)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _object(item: object) -> Mapping[str, object]:
    if not isinstance(item, Mapping):
        raise _BadLine(f"expected a JSON object, got {type(item).__name__}")
    return item


def _text(obj: Mapping[str, object], key: str) -> str:
    if key not in obj:
        raise _BadLine(f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise _BadLine(f"field {key!r} must be a non-empty string, got {_short(repr(value))}")
    return value


def _ts(obj: Mapping[str, object]) -> int:
    if "ts_ms" not in obj:
        raise _BadLine("missing field 'ts_ms'")
    value = obj["ts_ms"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _TS_LIMIT:
        return value
    raise _BadLine(f"field 'ts_ms' must be a non-negative int64, got {_short(repr(value))}")


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def _value(obj: Mapping[str, object]) -> float:
    if "value" not in obj:
        return 1.0
    value = obj["value"]
    if isinstance(value, int | float) and not isinstance(value, bool) and _finite(value):
        return float(value)
    raise _BadLine(f"field 'value' must be a finite number, got {_short(repr(value))}")


class _ExposureBuilder:
    def __init__(self, stats: _Stats | None = None) -> None:
        self.stats = _Stats() if stats is None else stats
        self.ts: list[int] = []
        self.unit: list[int] = []
        self.experiment: list[int] = []
        self.variant: list[int] = []
        self.units, self.experiments, self.variants = _Vocab(), _Vocab(), _Vocab()

    def add(self, item: object) -> None:
        if type(item) is dict:  # fast path for well-formed lines; anything else gets the full checks
            ts, unit, exp, var = item.get("ts_ms"), item.get("unit_id"), item.get("experiment"), item.get("variant")
            if (
                type(ts) is int
                and type(unit) is str
                and type(exp) is str
                and type(var) is str
                and unit
                and exp
                and var
                and 0 <= ts < _TS_LIMIT
            ):
                self.ts.append(ts)
                self.unit.append(self.units.code(unit))
                self.experiment.append(self.experiments.code(exp))
                self.variant.append(self.variants.code(var))
                return
        obj = _object(item)
        row = (_ts(obj), _text(obj, "unit_id"), _text(obj, "experiment"), _text(obj, "variant"))
        self.ts.append(row[0])
        self.unit.append(self.units.code(row[1]))
        self.experiment.append(self.experiments.code(row[2]))
        self.variant.append(self.variants.code(row[3]))

    def build(self, files: int) -> Exposures:
        return Exposures(
            ts_ms=np.array(self.ts, dtype=np.int64),
            unit=np.array(self.unit, dtype=np.intp),
            experiment=np.array(self.experiment, dtype=np.intp),
            variant=np.array(self.variant, dtype=np.intp),
            unit_ids=self.units.names(),
            experiments=self.experiments.names(),
            variants=self.variants.names(),
            read=self.stats.freeze(files, len(self.ts)),
        )

    def table(self) -> pa.Table:
        """The rows as an Arrow table of ``columnar.EXPOSURE_SCHEMA``."""
        return pa.Table.from_arrays(
            [
                pa.array(self.ts, type=pa.int64()),
                _decode(self.units, self.unit),
                _decode(self.experiments, self.experiment),
                _decode(self.variants, self.variant),
            ],
            schema=schema_of("exposures"),
        )


class _OutcomeBuilder:
    def __init__(self, stats: _Stats | None = None) -> None:
        self.stats = _Stats() if stats is None else stats
        self.ts: list[int] = []
        self.unit: list[int] = []
        self.metric: list[int] = []
        self.value: list[float] = []
        self.units, self.metrics = _Vocab(), _Vocab()

    def add(self, item: object) -> None:
        if type(item) is dict:  # fast path for well-formed lines; anything else gets the full checks
            ts, unit, metric, value = item.get("ts_ms"), item.get("unit_id"), item.get("metric"), item.get("value", 1.0)
            if (
                type(ts) is int
                and type(unit) is str
                and type(metric) is str
                and type(value) is float
                and unit
                and metric
                and 0 <= ts < _TS_LIMIT
                and math.isfinite(value)
            ):
                self.ts.append(ts)
                self.unit.append(self.units.code(unit))
                self.metric.append(self.metrics.code(metric))
                self.value.append(value)
                return
        obj = _object(item)
        row = (_ts(obj), _text(obj, "unit_id"), _text(obj, "metric"), _value(obj))
        self.ts.append(row[0])
        self.unit.append(self.units.code(row[1]))
        self.metric.append(self.metrics.code(row[2]))
        self.value.append(row[3])

    def build(self, files: int) -> Outcomes:
        return Outcomes(
            ts_ms=np.array(self.ts, dtype=np.int64),
            unit=np.array(self.unit, dtype=np.intp),
            metric=np.array(self.metric, dtype=np.intp),
            value=np.array(self.value, dtype=np.float64),
            unit_ids=self.units.names(),
            metrics=self.metrics.names(),
            read=self.stats.freeze(files, len(self.ts)),
        )

    def table(self) -> pa.Table:
        """The rows as an Arrow table of ``columnar.OUTCOME_SCHEMA``."""
        return pa.Table.from_arrays(
            [
                pa.array(self.ts, type=pa.int64()),
                _decode(self.units, self.unit),
                _decode(self.metrics, self.metric),
                pa.array(self.value, type=pa.float64()),
            ],
            schema=schema_of("outcomes"),
        )


def _decode(vocab: _Vocab, codes: list[int]) -> pa.Array:
    return pa.array(vocab.names(), type=pa.string()).take(pa.array(codes, type=pa.int64()))
