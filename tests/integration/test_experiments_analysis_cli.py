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


@pytest.mark.integration
def test_compact_watch_keeps_the_date_partitions_current_until_sigterm(tmp_path: Path) -> None:
    """The sidecar mode: a log that appears, then grows, is (re)written as date partitions; a bad
    line is reported and retried, not fatal; SIGTERM ends it cleanly."""
    import signal

    import pyarrow.parquet as pq

    from tests.e2e.rank_load import wait_for

    logs, dest = tmp_path / "exposures", tmp_path / "parquet"
    logs.mkdir()
    day = 86_400_000
    t0 = 1_764_000_000_000 - 1_764_000_000_000 % day + day - 1000  # one second before a UTC midnight

    def line(ts: int, unit: int) -> str:
        return json.dumps({"ts_ms": ts, "unit_id": f"u{unit}", "experiment": "e", "variant": "a"}) + "\n"

    log = logs / "exposures-1.jsonl"
    log.write_text(line(t0, 1) + line(t0 + 2000, 2))
    command = [sys.executable, "-m", "cli", "experiments", "compact", str(logs), str(dest)]
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [*command, "--partition-by-date", "--min-age", "0", "--watch", "0.2"], stdout=out, stderr=err, text=True
        )
    try:

        def rows() -> dict[str, int]:
            found = {}
            for part in dest.glob("date=*/*.parquet"):
                try:
                    found[part.parent.name] = pq.read_table(part).num_rows
                except OSError:  # being replaced right now
                    return {}
            return found

        assert wait_for(lambda: len(rows()) == 2, timeout=120), rows()
        assert sorted(rows().values()) == [1, 1]  # the two rows fall on two UTC days

        with log.open("a") as fh:
            fh.write(line(t0 + 3000, 3))  # the grown file differs in size from what was converted
        assert wait_for(lambda: sorted(rows().values()) == [1, 2], timeout=120), rows()

        (logs / "exposures-2.jsonl").write_text("not json\n")
        assert wait_for(lambda: "retrying" in err_path.read_text(), timeout=120), err_path.read_text()
        assert proc.poll() is None and sorted(rows().values()) == [1, 2]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert proc.returncode == 0, err_path.read_text()
    assert "every 0.2 s" in out_path.read_text() and out_path.read_text().rstrip().endswith("stopped")
    assert "exposures-2.jsonl" in err_path.read_text()
