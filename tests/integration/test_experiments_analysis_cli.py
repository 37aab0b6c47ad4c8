"""``encore experiments analyze | compact | aa`` as a user runs them: verdicts, JSON, Parquet, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_experiment_report_html import write_logs


def encore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "experiments", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.integration
def test_analyze_prints_the_verdict_and_json_carries_decision_and_timeline(tmp_path: Path) -> None:
    exposures, outcomes = write_logs(tmp_path)
    text = encore("analyze", "--exposures", str(exposures), "--outcomes", str(outcomes))
    assert text.returncode == 0, text.stderr
    assert "VERDICT: SHIP (TREATMENT)" in text.stdout
    assert "streams    success" in text.stdout and "skip_rate  guardrail (5%)" in text.stdout

    fixed = encore(
        "analyze", "--exposures", str(exposures), "--outcomes", str(outcomes), "--json",
        "--method", "fixed", "--cuped-window-days", "0",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    decision = json.loads(fixed.stdout)["experiments"][0]["decision"]
    assert decision["method"] == "fixed" and decision["cuped_window_days"] == 0
    assert decision["verdict"] == "ship" and decision["variant"] == "treatment"
    streams = next(m for m in decision["metrics"] if m["metric"] == "streams")
    assert streams["variance_reduction"] == 0.0
    days = decision["timeline"]
    assert [d["day"] for d in days[:2]] == ["2025-12-01", "2025-12-02"]
    assert sum(days[-1]["units"]) == sum(a["n"] for a in streams["arms"])


@pytest.mark.integration
def test_compacted_logs_give_the_same_analysis(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    exposures, outcomes = write_logs(tmp_path / "logs")
    old = 1_700_000_000  # the files are closed: older than --min-age
    for path in (exposures, outcomes):
        os.utime(path, (old, old))
    done = encore("compact", str(tmp_path / "logs"), str(tmp_path / "parquet"))
    assert done.returncode == 0, done.stderr
    assert "2 converted" in done.stdout
    again = encore("compact", str(tmp_path / "logs"), str(tmp_path / "parquet"))
    assert "0 converted" in again.stdout and "2 already current" in again.stdout
    parquet = tmp_path / "parquet"
    from_jsonl = encore("analyze", "--exposures", str(exposures), "--outcomes", str(outcomes), "--json")
    from_parquet = encore(
        "analyze", "--exposures", str(parquet / "exposures.jsonl.parquet"),
        "--outcomes", str(parquet / "outcomes.jsonl.parquet"), "--json",
    )  # fmt: skip
    a, b = json.loads(from_jsonl.stdout), json.loads(from_parquet.stdout)
    assert a["experiments"] == b["experiments"]


@pytest.mark.integration
def test_bad_decision_metrics_and_options_are_named(tmp_path: Path) -> None:
    exposures, outcomes = write_logs(tmp_path)
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text("metrics:\n  - {name: skip_rate, role: guardrail, numerator: skip}\n")
    bad = encore("analyze", "--exposures", str(exposures), "--outcomes", str(outcomes), "--metrics", str(metrics))
    assert bad.returncode == 2
    assert "metrics.yaml: metrics[0].margin" in bad.stderr
    option = encore("analyze", "--exposures", str(exposures), "--outcomes", str(outcomes), "--cuped-window-days", "-1")
    assert option.returncode == 2 and "--cuped-window-days" in option.stderr


@pytest.mark.integration
def test_aa_prints_the_false_positive_table() -> None:
    result = encore("aa", "--runs", "200", "--days", "7", "--units-per-day", "200")
    assert result.returncode == 0, result.stderr
    assert "A/A false-positive rate: 200 runs × 7 daily looks" in result.stdout
    assert "sequential (confidence sequence), any daily look" in result.stdout
