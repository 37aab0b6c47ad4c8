"""Offline analysis at scale: read and analyse 10 M exposures and 30 M outcomes.

    python -m loadtests.analysis_scale [--exposures 10000000] [--outcomes 30000000]
                                       [--dir /tmp/encore-scale] [--parquet]

Generates synthetic logs in the server's format and file layout (``exposures-<stamp>-<pid>-<seq>.jsonl``,
~64 MB files, the extra fields the server writes) unless ``--dir`` already holds logs of the same
sizes (``manifest.json``); generation is not timed. Then times reading the exposures, reading the
outcomes, ``analyze`` as ``encore experiments analyze`` runs it (verdicts, no daily timeline) and
with the daily timeline (what ``report`` and ``analyze --json`` add), and the totals; with ``--parquet`` also compacting
both logs to Parquet (``offline.experiments.compact``) and the same read + analyse from Parquet.
Prints seconds, rows/s and the process's peak RSS. Files are read from the page cache when warm
(the run reports what this machine does, not a cold disk).

Data: 4 experiments with 2-3 variants (a unit's variant is a hash of unit and experiment, ~0.5 %
of rows a conflicting variant), exposures over ``exposures / 2`` units, outcomes over the same
units plus 10 % never-exposed ones, metrics stream/skip/like (70/20/10 %), timestamps over 14 days.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from offline.experiments.analysis import AnalysisOptions, analyze
from offline.experiments.compact import compact_logs
from offline.experiments.outcome_logs import load_exposures, load_outcomes

T = TypeVar("T")

EXPERIMENTS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("home-ranker-lite", ("control", "lite")),
    ("np-diversity", ("control", "a", "b")),
    ("home-cold-start", ("control", "treatment")),
    ("np-radio-seed", ("control", "x", "y")),
)
METRICS: Final[tuple[str, ...]] = ("stream", "skip", "like")
METRIC_P: Final[tuple[float, ...]] = (0.7, 0.2, 0.1)
START_MS: Final[int] = 1_763_856_000_000
SPAN_MS: Final[int] = 14 * 86_400_000
EXPOSURE_ROWS_PER_FILE: Final[int] = 340_000  # ~64 MB, the server's default rotation size
OUTCOME_ROWS_PER_FILE: Final[int] = 500_000
MANIFEST_VERSION: Final[int] = 1


def _s(values: Sequence[str]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _write_lines(path: Path, parts: list[pa.Array | str]) -> None:
    """Write one line per row: the row's parts concatenated (each row's last part ends with a newline)."""
    lines = pc.binary_join_element_wise(*parts, "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    data = lines.buffers()[2]
    with path.open("wb") as fh:
        fh.write(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def _variant_of(units: NDArray[np.int64], exp: NDArray[np.int64], n_variants: NDArray[np.int64]) -> NDArray[np.int64]:
    """A stable pseudo-random variant per (unit, experiment)."""
    mixed = (units.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + exp.astype(np.uint64)) >> np.uint64(33)
    variant: NDArray[np.int64] = (mixed % n_variants[exp].astype(np.uint64)).astype(np.int64)
    return variant


def generate(directory: Path, exposures: int, outcomes: int, seed: int = 7) -> None:
    """Write the synthetic logs (see the module docstring) under ``directory``."""
    rng = np.random.default_rng(seed)
    units = max(1, exposures // 2)
    n_variants = np.array([len(v) for _, v in EXPERIMENTS])
    exp_names = _s([name for name, _ in EXPERIMENTS])
    var_names = _s(sorted({v for _, vs in EXPERIMENTS for v in vs}))
    var_index = {v: i for i, v in enumerate(var_names.to_pylist())}
    var_table = np.array([[var_index[v] for v in (*vs, *(vs[0],) * (3 - len(vs)))] for _, vs in EXPERIMENTS])
    for sub, total, per_file in (
        ("exposures", exposures, EXPOSURE_ROWS_PER_FILE),
        ("outcomes", outcomes, OUTCOME_ROWS_PER_FILE),
    ):
        out = directory / sub
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for seq, start in enumerate(range(0, total, per_file), 1):
            n = min(per_file, total - start)
            ts = np.sort(START_MS + rng.integers(0, SPAN_MS, n))
            ts_s = pc.cast(pa.array(ts), pa.string())
            path = out / f"{sub}-20251123T000000Z-4242-{seq:05d}.jsonl"
            if sub == "exposures":
                unit = rng.integers(0, units, n)
                exp = rng.integers(0, len(EXPERIMENTS), n)
                variant = _variant_of(unit, exp, n_variants)
                noise = rng.random(n) < 0.005
                variant[noise] = rng.integers(0, 2, int(noise.sum()))
                var_codes = var_table[exp, variant]
                request = pc.cast(pa.array(rng.integers(10**11, 10**12, n)), pa.string())
                parts: list[pa.Array | str] = [
                    '{"ts_ms":', ts_s,
                    ',"unit_id":"u', pc.cast(pa.array(unit), pa.string()),
                    '","experiment":"', exp_names.take(pa.array(exp)),
                    '","variant":"', var_names.take(pa.array(var_codes)),
                    '","surface":"home","request_id":"r', request,
                    '","model_version":"lgbm-v1-lite","bundle_version":"b20251123"}\n',
                ]  # fmt: skip
            else:
                unit = rng.integers(0, int(units * 1.1) + 1, n)
                metric = rng.choice(len(METRICS), n, p=METRIC_P)
                item = pc.cast(pa.array(rng.integers(0, 200_000, n)), pa.string())
                event_ts = pc.cast(pa.array(ts - rng.integers(0, 500, n)), pa.string())
                parts = [
                    '{"ts_ms":', ts_s,
                    ',"unit_id":"u', pc.cast(pa.array(unit), pa.string()),
                    '","metric":"', _s(METRICS).take(pa.array(metric)),
                    '","value":1.0,"item_id":"t', item,
                    '","event_ts_ms":', event_ts, ',"surface":"home"}\n',
                ]  # fmt: skip
            _write_lines(path, parts)


def _ensure_logs(directory: Path, exposures: int, outcomes: int) -> float:
    """Generate unless cached; returns the seconds spent generating (0 when cached)."""
    manifest = directory / "manifest.json"
    wanted = {"version": MANIFEST_VERSION, "exposures": exposures, "outcomes": outcomes}
    try:
        if json.loads(manifest.read_text()) == wanted:
            return 0.0
    except (OSError, ValueError):
        pass
    started = time.perf_counter()
    shutil.rmtree(directory / "parquet", ignore_errors=True)
    generate(directory, exposures, outcomes)
    manifest.write_text(json.dumps(wanted))
    return time.perf_counter() - started


def _timed(label: str, rows: int, fn: Callable[[], T], table: list[tuple[str, int, float]]) -> T:
    started = time.perf_counter()
    result = fn()
    table.append((label, rows, time.perf_counter() - started))
    print(f"  {label}: {table[-1][2]:.2f} s", flush=True)
    return result


def _du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exposures", type=int, default=10_000_000)
    parser.add_argument("--outcomes", type=int, default=30_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/encore-scale"))
    parser.add_argument("--parquet", action="store_true", help="also compact to Parquet and analyse from it")
    args = parser.parse_args(argv)
    root: Path = args.dir
    generated = _ensure_logs(root, args.exposures, args.outcomes)
    print(
        f"logs: {args.exposures:,} exposures, {args.outcomes:,} outcomes, {_du(root / 'exposures'):.2f} + "
        f"{_du(root / 'outcomes'):.2f} GiB JSONL in {root}"
        + (f" (generated in {generated:.0f} s)" if generated else " (cached)"),
        flush=True,
    )
    rows: list[tuple[str, int, float]] = []
    n_e, n_o = args.exposures, args.outcomes

    def run(source: str, ex_dir: Path, out_dir: Path) -> None:
        started = time.perf_counter()
        ex = _timed(f"read exposures ({source})", n_e, lambda: load_exposures([ex_dir]), rows)
        out = _timed(f"read outcomes ({source})", n_o, lambda: load_outcomes([out_dir]), rows)
        read_s = time.perf_counter() - started
        report = _timed(
            f"analyze ({source})", n_e + n_o, lambda: analyze(ex, out, AnalysisOptions(timeline=False)), rows
        )
        rows.append((f"total: analyze command ({source})", n_e + n_o, time.perf_counter() - started))
        assert report.exposures_read.records == n_e and report.outcomes_read.records == n_o, "row counts differ"
        with_days = time.perf_counter()
        _timed(f"analyze + daily timeline ({source})", n_e + n_o, lambda: analyze(ex, out), rows)
        rows.append((f"total: report, --json ({source})", n_e + n_o, read_s + time.perf_counter() - with_days))

    run("JSONL", root / "exposures", root / "outcomes")
    if args.parquet:
        pq_root = root / "parquet"
        shutil.rmtree(pq_root, ignore_errors=True)
        started = time.perf_counter()
        _timed(
            "compact exposures", n_e, lambda: compact_logs(root / "exposures", pq_root / "exposures", min_age_s=0), rows
        )
        _timed(
            "compact outcomes", n_o, lambda: compact_logs(root / "outcomes", pq_root / "outcomes", min_age_s=0), rows
        )
        rows.append(("compact total", n_e + n_o, time.perf_counter() - started))
        print(f"  Parquet: {_du(pq_root) * 1024:.0f} MiB", flush=True)
        run("Parquet", pq_root / "exposures", pq_root / "outcomes")

    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    width = max(len(label) for label, _, _ in rows)
    print(f"\n{'step':<{width}}  {'rows':>12}  {'seconds':>8}  {'rows/s':>12}")
    for label, n, seconds in rows:
        print(f"{label:<{width}}  {n:>12,}  {seconds:>8.2f}  {n / seconds if seconds else 0:>12,.0f}")
    print(f"peak RSS: {peak_gib:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
