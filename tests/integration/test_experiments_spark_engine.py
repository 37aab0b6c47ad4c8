"""``analyze_spark`` (local[2]) against the local ``analyze`` on the repo's example logs.

One SparkSession per module. Equality is exact: the text reports are identical and every JSON
number equal to 1e-12 relative (in fact bit-identical: the example values are counts, so every
float sum either engine forms is exact, whatever its order). Also: ``compact_logs`` with
``partition_by_date`` writes ``date=YYYY-MM-DD`` partitions that both engines read to the same report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from offline.experiments.analysis import AnalysisOptions, AnalysisReport, analyze
from offline.experiments.compact import compact_logs
from offline.experiments.outcome_logs import load_exposures, load_outcomes
from offline.experiments.report import format_report, report_to_json
from offline.experiments.spark_engine import analyze_spark
from serving.experiments.config import load_experiments

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REL_TOL = 1e-12


@pytest.fixture(scope="module")
def weights() -> dict[str, dict[str, float]]:
    config = load_experiments(EXAMPLES / "experiments.yaml")
    return {e.key: dict(e.weights_by_variant) for e in config.all_experiments}


@pytest.fixture(scope="module")
def local_report(weights: dict[str, dict[str, float]]) -> AnalysisReport:
    return analyze(
        load_exposures([EXAMPLES / "exposures"]),
        load_outcomes([EXAMPLES / "outcomes"]),
        AnalysisOptions(expected_weights=weights),
    )


def _assert_json_equal(a: object, b: object, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for key in a:
            _assert_json_equal(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_json_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        assert isinstance(b, int | float) and b == pytest.approx(a, rel=REL_TOL, abs=0.0), path
    else:
        assert a == b, path


def test_spark_engine_matches_the_local_engine_to_the_last_digit(
    spark: Any, weights: dict[str, dict[str, float]], local_report: AnalysisReport
) -> None:
    report = analyze_spark(
        spark, [EXAMPLES / "exposures"], [EXAMPLES / "outcomes"], AnalysisOptions(expected_weights=weights)
    )
    assert report.experiments and all(e.verdict is not None and e.timeline for e in report.experiments)
    assert format_report(report) == format_report(local_report)
    _assert_json_equal(report_to_json(report), report_to_json(local_report))
    for ours, theirs in zip(report.experiments, local_report.experiments, strict=True):
        assert ours.distributions == theirs.distributions


def test_date_partitioned_parquet_is_read_by_both_engines(
    spark: Any, weights: dict[str, dict[str, float]], local_report: AnalysisReport, tmp_path: Path
) -> None:
    for kind in ("exposures", "outcomes"):
        summary = compact_logs(EXAMPLES / kind, tmp_path / kind, min_age_s=0.0, partition_by_date=True)
        assert summary.converted == 1
        again = compact_logs(EXAMPLES / kind, tmp_path / kind, min_age_s=0.0, partition_by_date=True)
        assert again.current == 1 and again.converted == 0
        days = sorted(p.name for p in (tmp_path / kind).iterdir() if not p.name.startswith("."))
        assert len(days) > 1 and all(d.startswith("date=20") for d in days)
    paths = ([tmp_path / "exposures"], [tmp_path / "outcomes"])
    local = analyze(load_exposures(paths[0]), load_outcomes(paths[1]), AnalysisOptions(expected_weights=weights))
    distributed = analyze_spark(spark, *paths, AnalysisOptions(expected_weights=weights))
    assert format_report(distributed) == format_report(local)
    # Only the header's file counts differ from the JSONL analysis.
    assert format_report(local).splitlines()[2:] == format_report(local_report).splitlines()[2:]
    assert local.exposures_read.records == local_report.exposures_read.records
