"""The Arrow log reader equals the Python line reader; Parquet inputs; compaction to Parquet."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offline.experiments.columnar import read_jsonl_table
from offline.experiments.compact import CompactEvent, compact_logs
from offline.experiments.outcome_logs import (
    AnalysisInputError,
    Exposures,
    Outcomes,
    load_exposures,
    load_outcomes,
)


def exposure(unit: str, variant: str = "control", ts: int = 1_000, experiment: str = "exp") -> dict[str, object]:
    return {"ts_ms": ts, "unit_id": unit, "experiment": experiment, "variant": variant, "surface": "home"}


def outcome(unit: str, metric: str = "stream", ts: int = 2_000, value: float | None = None) -> dict[str, object]:
    record: dict[str, object] = {"ts_ms": ts, "unit_id": unit, "metric": metric, "item_id": "t1"}
    if value is not None:
        record["value"] = value
    return record


def lines(*records: dict[str, object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def write(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def assert_same_exposures(fast: Exposures, slow: Exposures) -> None:
    assert isinstance(fast.unit_ids, pa.Array) and isinstance(slow.unit_ids, tuple)
    assert fast.unit_ids.to_pylist() == list(slow.unit_ids)
    assert (fast.experiments, fast.variants, fast.read) == (slow.experiments, slow.variants, slow.read)
    for name in ("ts_ms", "unit", "experiment", "variant"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


def assert_same_outcomes(fast: Outcomes, slow: Outcomes) -> None:
    assert isinstance(fast.unit_ids, pa.Array) and isinstance(slow.unit_ids, tuple)
    assert fast.unit_ids.to_pylist() == list(slow.unit_ids)
    assert (fast.metrics, fast.read) == (slow.metrics, slow.read)
    for name in ("ts_ms", "unit", "metric", "value"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


def both_exposures(paths: list[Path], strict: bool) -> tuple[Exposures | str, Exposures | str]:
    results: list[Exposures | str] = []
    for columnar in (True, False):
        try:
            results.append(load_exposures(paths, strict=strict, columnar=columnar))
        except AnalysisInputError as exc:
            results.append(str(exc))
    return results[0], results[1]


def both_outcomes(paths: list[Path], strict: bool) -> tuple[Outcomes | str, Outcomes | str]:
    results: list[Outcomes | str] = []
    for columnar in (True, False):
        try:
            results.append(load_outcomes(paths, strict=strict, columnar=columnar))
        except AnalysisInputError as exc:
            results.append(str(exc))
    return results[0], results[1]


# --- JSONL: the fast path equals the line reader -------------------------------------------------


def test_clean_logs_take_the_fast_path_and_equal_the_line_reader(tmp_path: Path) -> None:
    logs = tmp_path / "exposures"
    write(logs / "exposures-1.jsonl", lines(exposure("b", "lite", 5), exposure("a"), exposure("b", "lite", 3)))
    write(logs / "exposures-1.jsonl.1", lines(exposure("c", "x", experiment="other"), exposure("a")))
    write(logs / "day" / "exposures.jsonl.2025-11-23.gz", lines(exposure("d", "lite"), exposure("b")), gz=True)
    crlf = (
        lines(exposure("e")).replace(b"\n", b"\r\n") + b'  {"variant":"v","experiment":"exp","ts_ms":0,"unit_id":"f"}'
    )
    write(logs / "crlf.jsonl", crlf)  # CRLF, an indented line, no final newline, fields in another order
    single = write(tmp_path / "extra.log", lines(exposure("g", "lite")), gz=True)  # gzip found by magic bytes

    for path in [*sorted(p for p in logs.rglob("*") if p.is_file()), single]:
        assert read_jsonl_table(path, "exposures") is not None, path
    fast, slow = both_exposures([logs, single], strict=True)
    assert isinstance(fast, Exposures) and isinstance(slow, Exposures)
    assert_same_exposures(fast, slow)
    assert fast.read.files == 5 and len(fast) == 10

    outcomes = write(
        tmp_path / "o.jsonl", lines(outcome("a"), outcome("b", "like", value=2.5), outcome("a", "skip", value=3))
    )
    assert read_jsonl_table(outcomes, "outcomes") is not None
    fast_o, slow_o = both_outcomes([outcomes], strict=True)
    assert isinstance(fast_o, Outcomes) and isinstance(slow_o, Outcomes)
    assert_same_outcomes(fast_o, slow_o)
    assert fast_o.value.tolist() == [1.0, 2.5, 3.0]


EXPOSURE_OK = json.dumps(exposure("ok")).encode()
OUTCOME_OK = json.dumps(outcome("ok")).encode()

MALFORMED_EXPOSURE_LINES = {
    "blank lines": b"\n   \n",
    "two objects on a line": EXPOSURE_OK + b" " + EXPOSURE_OK,
    "object split over lines": b'{"ts_ms": 1, "unit_id": "s",\n"experiment": "exp", "variant": "control"}',
    "not JSON": b'{"ts_ms": 1, "unit_id": "b", "experim',
    "array": b"[1, 2]",
    "missing field": b'{"ts_ms": 1, "unit_id": "b", "experiment": "exp"}',
    "empty string": b'{"ts_ms": 1, "unit_id": "", "experiment": "exp", "variant": "v"}',
    "null field": b'{"ts_ms": 1, "unit_id": null, "experiment": "exp", "variant": "v"}',
    "negative ts": b'{"ts_ms": -1, "unit_id": "b", "experiment": "exp", "variant": "v"}',
    "integral float ts": b'{"ts_ms": 7.0, "unit_id": "b", "experiment": "exp", "variant": "v"}',
    "fractional ts": b'{"ts_ms": 7.5, "unit_id": "b", "experiment": "exp", "variant": "v"}',
    "string ts": b'{"ts_ms": "7", "unit_id": "b", "experiment": "exp", "variant": "v"}',
    "bool ts": b'{"ts_ms": true, "unit_id": "b", "experiment": "exp", "variant": "v"}',
    "huge ts": b'{"ts_ms": 99999999999999999999, "unit_id": "b", "experiment": "exp", "variant": "v"}',
    "number as string": b'{"ts_ms": 1, "unit_id": 5, "experiment": "exp", "variant": "v"}',
    "duplicate key": b'{"ts_ms": 1, "unit_id": "x", "unit_id": "y", "experiment": "exp", "variant": "v"}',
    "invalid UTF-8 in an extra field": b'{"ts_ms": 1, "unit_id": "b", "experiment": "e", "variant": "v", "x": "\xff"}',
    "BOM": b"\xef\xbb\xbf" + EXPOSURE_OK,
    "trailing comma": b'{"ts_ms": 1, "unit_id": "b", "experiment": "exp", "variant": "v",}',
}


@pytest.mark.parametrize("bad", list(MALFORMED_EXPOSURE_LINES), ids=list(MALFORMED_EXPOSURE_LINES))
@pytest.mark.parametrize("position", ["first", "middle"])
def test_malformed_exposure_lines_fall_back_to_the_line_reader(tmp_path: Path, bad: str, position: str) -> None:
    good = [json.dumps(exposure(u, "lite")).encode() for u in "pqr"]
    body = (
        [MALFORMED_EXPOSURE_LINES[bad], *good]
        if position == "first"
        else [*good[:2], MALFORMED_EXPOSURE_LINES[bad], good[2]]
    )
    path = write(tmp_path / "exposures.jsonl.gz", b"\n".join(body) + b"\n", gz=True)

    assert read_jsonl_table(path, "exposures") is None
    for strict in (True, False):
        fast, slow = both_exposures([path], strict)
        if isinstance(slow, str):
            assert fast == slow and f"{path}:" in slow  # the same error, naming path:line
        else:
            assert isinstance(fast, Exposures)
            assert_same_exposures(fast, slow)


MALFORMED_OUTCOME_LINES = {
    "explicit null value": b'{"ts_ms": 1, "unit_id": "b", "metric": "stream", "value": null}',
    "NaN value": b'{"ts_ms": 1, "unit_id": "b", "metric": "stream", "value": NaN}',
    "overflowing value": b'{"ts_ms": 1, "unit_id": "b", "metric": "stream", "value": 1e400}',
    "huge integer value": b'{"ts_ms": 1, "unit_id": "b", "metric": "stream", "value": 1' + b"0" * 400 + b"}",
    "string value": b'{"ts_ms": 1, "unit_id": "b", "metric": "stream", "value": "2"}',
    "bool value": b'{"ts_ms": 1, "unit_id": "b", "metric": "stream", "value": true}',
    "missing metric": b'{"ts_ms": 1, "unit_id": "b"}',
}


@pytest.mark.parametrize("bad", list(MALFORMED_OUTCOME_LINES), ids=list(MALFORMED_OUTCOME_LINES))
def test_malformed_outcome_lines_fall_back_to_the_line_reader(tmp_path: Path, bad: str) -> None:
    body = [OUTCOME_OK, json.dumps(outcome("v", value=2.0)).encode(), MALFORMED_OUTCOME_LINES[bad], OUTCOME_OK]
    path = write(tmp_path / "outcomes.jsonl", b"\n".join(body) + b"\n")

    assert read_jsonl_table(path, "outcomes") is None
    strict_fast, strict_slow = both_outcomes([path], strict=True)
    assert strict_fast == strict_slow == f"{path}:3: " + str(strict_slow).split(":3: ", 1)[1]
    fast, slow = both_outcomes([path], strict=False)
    assert isinstance(fast, Outcomes) and isinstance(slow, Outcomes)
    assert_same_outcomes(fast, slow)
    assert (fast.read.records, fast.read.skipped) == (3, 1)


def test_a_null_extra_field_keeps_the_fast_path_and_null_text_only_matters_when_value_is_absent(tmp_path: Path) -> None:
    with_value = write(tmp_path / "a.jsonl", lines({**outcome("a", value=1.0), "surface": None}))
    assert read_jsonl_table(with_value, "outcomes") is not None
    absent = write(tmp_path / "b.jsonl", lines({**outcome("a"), "surface": None}))
    assert read_jsonl_table(absent, "outcomes") is None  # cannot tell a null value from an absent one
    fast, slow = both_outcomes([with_value, absent], strict=True)
    assert isinstance(fast, Outcomes) and isinstance(slow, Outcomes)
    assert_same_outcomes(fast, slow)


def test_lenient_counts_and_codes_span_fast_and_fallback_files(tmp_path: Path) -> None:
    clean = write(tmp_path / "logs" / "1.jsonl", lines(exposure("a"), exposure("b", "lite")))
    broken = write(tmp_path / "logs" / "2.jsonl", lines(exposure("c", "x")) + b"[1]\n" + lines(exposure("a", "y")))
    fast, slow = both_exposures([tmp_path / "logs"], strict=False)
    assert isinstance(fast, Exposures) and isinstance(slow, Exposures)
    assert_same_exposures(fast, slow)
    assert (fast.read.records, fast.read.skipped, fast.read.problems[0]) == (
        4,
        1,
        f"{broken}:2: expected a JSON object, got list",
    )
    assert fast.variants == ("control", "lite", "x", "y") and clean.exists()


def test_empty_and_corrupt_files_behave_as_with_the_line_reader(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.jsonl", b"")
    fast, slow = both_exposures([empty], strict=True)
    assert isinstance(fast, Exposures) and isinstance(slow, Exposures)
    assert_same_exposures(fast, slow)
    truncated = write(tmp_path / "cut.jsonl.gz", gzip.compress(lines(*(outcome(f"u{i}") for i in range(50))))[:-20])
    fast_o, slow_o = both_outcomes([truncated], strict=False)
    assert fast_o == slow_o and "cut.jsonl.gz: unreadable" in str(fast_o)


# --- Parquet inputs ------------------------------------------------------------------------------


def test_parquet_inputs_equal_their_rows_as_records_and_mix_with_jsonl(tmp_path: Path) -> None:
    logs = tmp_path / "outcomes"
    write(logs / "0.jsonl", lines(outcome("z", "like")))
    pq.write_table(
        pa.table(
            {
                "unit_id": ["a", "b", "a"],
                "ts_ms": pa.array([5, 6, 7], pa.int32()),  # cast to int64
                "metric": pa.array(["stream", "skip", "stream"]).dictionary_encode(),
                "value": [None, 2.0, 0.5],  # null = absent = 1.0
                "item_id": ["t1", "t2", "t3"],
            }
        ),
        logs / "1.parquet",
    )
    pq.write_table(pa.table({"ts_ms": [9], "unit_id": ["c"], "metric": ["stream"]}), logs / "2.jsonl.parquet")
    fast, slow = both_outcomes([logs], strict=True)
    assert isinstance(fast, Outcomes) and isinstance(slow, Outcomes)
    assert_same_outcomes(fast, slow)
    assert fast.value.tolist() == [1.0, 1.0, 2.0, 0.5, 1.0] and fast.read.files == 3


def test_bad_parquet_rows_name_the_row_and_are_skipped_when_lenient(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pq.write_table(
        pa.table(
            {
                "ts_ms": [1, -5, 3, 4],
                "unit_id": ["a", "b", "", "d"],
                "experiment": ["exp"] * 4,
                "variant": ["control", "lite", "lite", None],
            }
        ),
        path,
    )
    with pytest.raises(AnalysisInputError, match=r"e\.parquet:2: field 'ts_ms' must be a non-negative int64") as info:
        load_exposures([path])
    assert (info.value.path, info.value.line) == (str(path), 2)
    fast, slow = both_exposures([path], strict=False)
    assert isinstance(fast, Exposures) and isinstance(slow, Exposures)
    assert_same_exposures(fast, slow)
    assert (fast.read.records, fast.read.skipped) == (1, 3)
    assert fast.read.problems[2] == f"{path}:4: missing field 'variant'"


def test_parquet_without_a_required_column_or_corrupt_raises(tmp_path: Path) -> None:
    pq.write_table(pa.table({"ts_ms": [1], "unit_id": ["a"]}), tmp_path / "o.parquet")
    with pytest.raises(AnalysisInputError, match=r"o\.parquet: Parquet file lacks column\(s\) metric"):
        load_outcomes([tmp_path / "o.parquet"], strict=False)
    write(tmp_path / "bad.parquet", b"PAR1 this is not really parquet")
    with pytest.raises(AnalysisInputError, match=r"bad\.parquet: unreadable Parquet file"):
        load_outcomes([tmp_path / "bad.parquet"])


# --- compaction ----------------------------------------------------------------------------------


def age(path: Path, seconds: float = 3600.0) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))


def test_compaction_converts_closed_files_once_and_reads_back_equal(tmp_path: Path) -> None:
    src, dest = tmp_path / "exposures", tmp_path / "warehouse" / "exposures"
    first = write(src / "exposures-1.jsonl", lines(exposure("a"), exposure("b", "lite")))
    second = write(src / "day" / "exposures-2.jsonl.gz", lines(exposure("c", "lite")), gz=True)
    active = write(src / "exposures-3.jsonl", lines(exposure("d")))
    age(first)
    age(second)
    events: list[CompactEvent] = []

    summary = compact_logs(src, dest, progress=events.append)

    assert [(e.source.name, e.action) for e in events] == [
        ("exposures-2.jsonl.gz", "converted"),
        ("exposures-1.jsonl", "converted"),
        ("exposures-3.jsonl", "open"),
    ]
    assert (summary.converted, summary.open, summary.rows) == (2, 1, 3)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "day",
        "day/exposures-2.jsonl.gz.parquet",
        "exposures-1.jsonl.parquet",
    ]  # no temp files left behind
    from_parquet = load_exposures([dest])
    from_jsonl = load_exposures([second, first])
    assert isinstance(from_parquet.unit_ids, pa.Array) and isinstance(from_jsonl.unit_ids, pa.Array)
    assert from_parquet.unit_ids.equals(from_jsonl.unit_ids) and np.array_equal(from_parquet.unit, from_jsonl.unit)

    mtime = (dest / "exposures-1.jsonl.parquet").stat().st_mtime_ns
    again = compact_logs(src, dest)
    assert (again.converted, again.current, again.open) == (0, 2, 1)
    assert (dest / "exposures-1.jsonl.parquet").stat().st_mtime_ns == mtime

    with first.open("ab") as fh:  # a file that grew after its conversion is converted again
        fh.write(lines(exposure("e")))
    age(first)
    age(active)
    third = compact_logs(src, dest)
    assert (third.converted, third.current, third.rows) == (2, 1, 4)
    assert len(load_exposures([dest])) == 5


def test_compaction_of_a_malformed_file_writes_nothing_when_strict_and_drops_lines_when_lenient(tmp_path: Path) -> None:
    src, dest = tmp_path / "outcomes", tmp_path / "pq"
    bad = write(src / "outcomes-1.jsonl", lines(outcome("a")) + b"{oops\n" + lines(outcome("b", value=2.0)))
    age(bad)
    with pytest.raises(AnalysisInputError, match=r"outcomes-1\.jsonl:2: not valid JSON"):
        compact_logs(src, dest)
    assert not dest.exists() or not any(dest.rglob("*"))

    summary = compact_logs(src, dest, strict=False)
    assert (summary.converted, summary.rows, summary.skipped_lines) == (1, 2, 1)
    assert summary.problems[0].startswith(f"{bad}:2: not valid JSON")
    table = pq.read_table(dest / "outcomes-1.jsonl.parquet")
    assert table.to_pydict() == {
        "ts_ms": [2000, 2000],
        "unit_id": ["a", "b"],
        "metric": ["stream"] * 2,
        "value": [1.0, 2.0],
    }
    assert table.schema.metadata[b"encore.kind"] == b"outcomes"


def test_compaction_refuses_a_destination_inside_the_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must not be inside"):
        compact_logs(tmp_path, tmp_path / "parquet")
