"""Offline experiment analysis: joins, dedupe, statistics (checked by hand and against scipy), SRM, I/O."""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from offline.experiments.analysis import (
    AnalysisOptions,
    AnalysisReport,
    Comparison,
    ExperimentResult,
    MetricResult,
    adjust_p_values,
    analyze,
)
from offline.experiments.outcome_logs import AnalysisInputError, Exposures, Outcomes, load_exposures, load_outcomes
from offline.experiments.report import format_report, report_to_json

EXP = "home-ranker-lite"


def exposure(unit: str, variant: str, ts: int = 1_000, experiment: str = EXP) -> dict[str, object]:
    return {"ts_ms": ts, "unit_id": unit, "experiment": experiment, "variant": variant, "surface": "home"}


def outcome(unit: str, metric: str = "stream", ts: int = 2_000, value: float | None = None) -> dict[str, object]:
    record: dict[str, object] = {"ts_ms": ts, "unit_id": unit, "metric": metric}
    if value is not None:
        record["value"] = value
    return record


def run(
    exposures: Iterable[Mapping[str, object]],
    outcomes: Iterable[Mapping[str, object]],
    **kwargs: object,
) -> AnalysisReport:
    return analyze(Exposures.from_records(exposures), Outcomes.from_records(outcomes), AnalysisOptions(**kwargs))  # type: ignore[arg-type]


def only_experiment(report: AnalysisReport, key: str = EXP) -> ExperimentResult:
    return next(e for e in report.experiments if e.experiment == key)


def metric(report: AnalysisReport, name: str = "stream", key: str = EXP) -> MetricResult:
    return next(m for m in only_experiment(report, key).metrics if m.metric == name)


def comparison(report: AnalysisReport, variant: str, name: str = "stream", key: str = EXP) -> Comparison:
    return next(c for c in metric(report, name, key).comparisons if c.variant == variant)


def write_jsonl(path: Path, records: Iterable[Mapping[str, object]], *, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


# --- statistics ----------------------------------------------------------------------------------


def test_hand_computed_example_gives_welch_delta_method_and_z_figures() -> None:
    # control c1 = 0 (no outcome), c2 = 1 + 1 = 2;  lite t1 = 2 + 1 = 3, t2 = 5.
    # means: m_c = 1, m_t = 4; sample variances: s_c² = ((0-1)² + (2-1)²)/1 = 2, s_t² = ((3-4)² + (5-4)²)/1 = 2.
    # se = sqrt(2/2 + 2/2) = sqrt(2); t = 3 / sqrt(2) = 2.12132;
    # df = (1 + 1)² / (1²/1 + 1²/1) = 2.
    # For df = 2 the t CDF is closed-form: F(t) = 1/2 + t / (2 sqrt(2 + t²)), so
    # p = 1 - t/sqrt(2 + t²) = 1 - (3/√2)/sqrt(13/2) = 1 - 3/√13 = 0.167950;
    # t_0.975,2 solves t/sqrt(2 + t²) = 0.95 → t² = 0.9025·2/0.0975 → t = 4.302653;
    # CI = 3 ± 4.302653·√2 = 3 ± 6.084872 = [-3.084872, 9.084872].
    # Relative: r = 4/1 - 1 = 3; se_r² = s_t²/(n_t m_c²) + m_t² s_c²/(n_c m_c⁴) = 2/2 + 16·2/2 = 17;
    # CI = 3 ± 1.959964·√17 = 3 ± 8.081138.
    # Conversion: p_c = 1/2, p_t = 2/2; pooled 3/4; se0 = sqrt(3/4·1/4·(1/2 + 1/2)) = √3/4;
    # z = (1/2)/(√3/4) = 2/√3 = 1.154701; p = 2Φ(-z) = erfc(z/√2) = erfc(√(2/3)) = 0.248213.
    report = run(
        [exposure("c1", "control"), exposure("c2", "control"), exposure("t1", "lite"), exposure("t2", "lite")],
        [outcome("c2"), outcome("c2"), outcome("t1", value=2.0), outcome("t1"), outcome("t2", value=5.0)],
    )
    control, lite = metric(report).variants
    assert (control.variant, control.n, control.mean, control.std, control.conversion) == (
        "control",
        2,
        1.0,
        2**0.5,
        0.5,
    )
    assert (lite.variant, lite.n, lite.mean, lite.std, lite.conversion) == ("lite", 2, 4.0, 2**0.5, 1.0)

    c = comparison(report, "lite")
    assert c.abs_lift == pytest.approx(3.0)
    assert c.t_stat == pytest.approx(2.121320, abs=1e-6)
    assert c.df == pytest.approx(2.0)
    assert c.p_value == pytest.approx(1 - 3 / math.sqrt(13))
    assert c.p_value == pytest.approx(0.167950, abs=1e-6)
    assert c.abs_ci is not None
    assert (c.abs_ci.low, c.abs_ci.high) == pytest.approx((-3.084872, 9.084872), abs=1e-5)
    assert c.rel_lift == pytest.approx(3.0)
    assert c.rel_ci is not None
    assert (c.rel_ci.low, c.rel_ci.high) == pytest.approx((3 - 8.081138, 3 + 8.081138), abs=1e-5)
    assert c.conversion_lift == pytest.approx(0.5)
    assert c.z_stat == pytest.approx(2 / math.sqrt(3))
    assert c.conversion_p_value == pytest.approx(math.erfc(math.sqrt(2 / 3)))
    assert c.conversion_p_value == pytest.approx(0.248213, abs=1e-6)
    # A single comparison: Holm leaves the p-value unchanged.
    assert c.p_adjusted == pytest.approx(c.p_value)
    assert c.significant is False


def _random_experiment(seed: int) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    rng = np.random.default_rng(seed)
    exposures, outcomes = [], []
    for i in range(600):
        variant = "control" if i % 2 else "lite"
        exposures.append(exposure(f"u{i}", variant, ts=int(rng.integers(1_000, 2_000))))
        rate = 1.5 if variant == "control" else 1.9
        for _ in range(int(rng.poisson(rate))):
            outcomes.append(outcome(f"u{i}", ts=int(rng.integers(500, 3_000)), value=float(rng.exponential(2.0))))
    return exposures, outcomes


def _unit_values(exposures: list[dict[str, object]], outcomes: list[dict[str, object]]) -> dict[str, list[float]]:
    """Independent, loop-based reference join: per variant, every unit's post-exposure sum."""
    first = {str(e["unit_id"]): (int(str(e["ts_ms"])), str(e["variant"])) for e in exposures}
    totals: dict[str, float] = defaultdict(float)
    for o in outcomes:
        unit = str(o["unit_id"])
        if int(str(o["ts_ms"])) >= first[unit][0]:
            totals[unit] += float(str(o.get("value", 1.0)))
    per_variant: dict[str, list[float]] = defaultdict(list)
    for unit, (_, variant) in first.items():
        per_variant[variant].append(totals.get(unit, 0.0))
    return per_variant


def test_welch_lift_p_value_and_ci_match_scipy_ttest_ind_on_random_data() -> None:
    exposures, outcomes = _random_experiment(seed=7)
    ref = _unit_values(exposures, outcomes)
    expected = stats.ttest_ind(ref["lite"], ref["control"], equal_var=False)
    ci = expected.confidence_interval(0.95)

    c = comparison(run(exposures, outcomes), "lite")

    assert c.t_stat == pytest.approx(expected.statistic, rel=1e-9)
    assert c.df == pytest.approx(expected.df, rel=1e-9)
    assert c.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert c.abs_ci is not None
    assert (c.abs_ci.low, c.abs_ci.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.abs_lift == pytest.approx(np.mean(ref["lite"]) - np.mean(ref["control"]))


def test_conversion_z_test_matches_scipy_chi2_contingency_without_continuity_correction() -> None:
    exposures, outcomes = _random_experiment(seed=11)
    ref = _unit_values(exposures, outcomes)
    table = [[sum(v > 0 for v in ref[k]), sum(v <= 0 for v in ref[k])] for k in ("lite", "control")]
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)

    c = comparison(run(exposures, outcomes), "lite")

    assert c.z_stat is not None
    assert c.z_stat**2 == pytest.approx(chi2, rel=1e-9)
    assert c.conversion_p_value == pytest.approx(p, rel=1e-9)
    assert c.conversion_lift == pytest.approx(table[0][0] / len(ref["lite"]) - table[1][0] / len(ref["control"]))


def test_srm_chi_square_matches_scipy_chisquare_against_config_weights() -> None:
    counts = {"control": 510, "lite": 290, "heavy": 200}
    exposures = [exposure(f"{v}{i}", v) for v, n in counts.items() for i in range(n)]
    weights = {EXP: {"control": 0.5, "lite": 0.3, "heavy": 0.2}}

    srm = only_experiment(run(exposures, [], expected_weights=weights)).srm

    expected = stats.chisquare([510, 290, 200], f_exp=[500, 300, 200])
    assert srm.variants == ("control", "lite", "heavy")
    assert srm.observed == (510, 290, 200)
    assert srm.expected == pytest.approx((500.0, 300.0, 200.0))
    assert srm.chi2 == pytest.approx(expected.statistic)
    assert srm.p_value == pytest.approx(expected.pvalue)
    assert srm.weights_source == "config"
    assert srm.flagged is False


def test_srm_flags_5000_vs_4500_units_on_a_50_50_config_and_warns_at_the_top_of_the_section() -> None:
    exposures = [exposure(f"c{i}", "control") for i in range(5000)]
    exposures += [exposure(f"l{i}", "lite") for i in range(4500)]
    exposures += [exposure(f"x{i}", "control" if i % 2 else "lite", experiment="balanced") for i in range(200)]

    report = run(exposures, [outcome("c1")], expected_weights={EXP: {"control": 0.5, "lite": 0.5}})

    srm = only_experiment(report).srm
    # chi2 = 2·250²/4750 = 26.3158; with 1 df, p = erfc(sqrt(chi2/2)) ≈ 2.9e-7.
    assert srm.chi2 is not None
    assert srm.chi2 == pytest.approx(2 * 250**2 / 4750)
    assert srm.p_value == pytest.approx(math.erfc(math.sqrt(srm.chi2 / 2)))
    assert srm.flagged is True
    assert report.srm_flagged == (EXP,)
    text = format_report(report)
    section = text.split(f"=== Experiment {EXP} ===\n", 1)[1]
    assert section.startswith("!!!!!!!!")
    assert "SAMPLE RATIO MISMATCH" in section.split("metric:", 1)[0]
    balanced = text.split("=== Experiment balanced ===\n", 1)[1].split("=== Experiment", 1)[0]
    assert "SAMPLE RATIO MISMATCH" not in balanced


def test_srm_is_not_flagged_on_a_balanced_split_with_equal_weights() -> None:
    exposures = [exposure(f"c{i}", "control") for i in range(5000)]
    exposures += [exposure(f"l{i}", "lite") for i in range(4980)]

    srm = only_experiment(run(exposures, [])).srm

    assert srm.weights_source == "equal"
    assert srm.p_value is not None and srm.p_value > 0.5
    assert srm.flagged is False
    assert "SAMPLE RATIO MISMATCH" not in format_report(run(exposures, []))


def test_units_in_a_variant_without_config_weight_flag_srm() -> None:
    exposures = [exposure(f"c{i}", "control") for i in range(100)] + [exposure(f"l{i}", "lite") for i in range(100)]
    exposures += [exposure("stray", "old-arm")]

    srm = only_experiment(run(exposures, [], expected_weights={EXP: {"control": 0.5, "lite": 0.5}})).srm

    assert srm.unexpected_variants == ("old-arm",)
    assert srm.p_value == pytest.approx(1.0)
    assert srm.flagged is True


def test_holm_adjusted_p_values_match_hand_computation() -> None:
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06.
    adjusted = adjust_p_values([0.01, 0.04, 0.03, 0.005], "holm")
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_benjamini_hochberg_adjusted_p_values_match_hand_computation_and_scipy() -> None:
    # sorted: 0.005·4/1 = 0.02, 0.01·4/2 = 0.02, 0.03·4/3 = 0.04, 0.04·4/4 = 0.04 → running min from the top.
    p = [0.01, 0.04, 0.03, 0.005]
    adjusted = adjust_p_values(p, "bh")
    assert adjusted == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjusted == pytest.approx(list(stats.false_discovery_control(p, method="bh")))


def test_adjusted_p_values_are_capped_at_one_and_skip_undefined_tests() -> None:
    # None is not part of the family, so m = 2: sorted 0.2·2 = 0.4, then 0.6·1 = 0.6 (running max 0.6).
    assert adjust_p_values([0.6, None, 0.2], "holm") == [pytest.approx(0.6), None, pytest.approx(0.4)]
    assert adjust_p_values([0.9, 0.8, 0.7], "holm") == pytest.approx([1.0, 1.0, 1.0])
    assert adjust_p_values([], "bh") == []


def test_correction_family_is_every_variant_metric_comparison_within_one_experiment() -> None:
    rng = np.random.default_rng(3)
    exposures, outcomes = [], []
    for i in range(300):
        variant = ("control", "lite", "heavy")[i % 3]
        exposures.append(exposure(f"u{i}", variant))
        exposures.append(exposure(f"u{i}", "control" if i % 2 else "lite", experiment="other"))
        for m, rate in (("stream", 1.0 + 0.5 * (variant == "heavy")), ("skip", 1.0)):
            outcomes += [outcome(f"u{i}", m) for _ in range(int(rng.poisson(rate)))]

    for method in ("holm", "bh"):
        report = run(exposures, outcomes, correction=method)
        family = [c for m in only_experiment(report).metrics for c in m.comparisons]
        assert len(family) == 4
        expected = adjust_p_values([c.p_value for c in family], method)
        assert [c.p_adjusted for c in family] == pytest.approx(expected)
        assert all(c.significant == (c.p_adjusted is not None and c.p_adjusted < 0.05) for c in family)
        # The other experiment is its own family of two.
        other = [c for m in only_experiment(report, "other").metrics for c in m.comparisons]
        assert [c.p_adjusted for c in other] == pytest.approx(adjust_p_values([c.p_value for c in other], method))


# --- joins and dedupe ----------------------------------------------------------------------------


def test_duplicate_exposures_keep_the_earliest_and_are_counted() -> None:
    exposures = [exposure("a", "lite", ts=100), exposure("a", "lite", ts=50), exposure("b", "control", ts=10)]
    exposures += [exposure("c", "control", ts=10), exposure("d", "lite", ts=10)]
    # a's outcome at 70 is after its first exposure (50) though before the duplicate (100).
    report = run(exposures, [outcome("a", ts=70)])

    exp = only_experiment(report)
    assert (exp.exposure_rows, exp.duplicate_exposures, exp.units) == (5, 1, 4)
    lite = next(v for v in metric(report).variants if v.variant == "lite")
    assert (lite.n, lite.mean) == (2, 0.5)
    assert exp.outcomes_before_exposure == 0


def test_unit_exposed_to_two_variants_is_excluded_from_that_experiment_only() -> None:
    exposures = [exposure("flip", "control", ts=1), exposure("flip", "lite", ts=2), exposure("flip", "lite", ts=3)]
    exposures += [exposure("a", "control"), exposure("b", "lite"), exposure("flip", "lite", experiment="other")]
    exposures += [exposure("z", "control", experiment="other")]

    report = run(exposures, [outcome("flip", value=10.0)])

    exp = only_experiment(report)
    assert exp.multiple_variant_units == 1
    assert exp.units == 2
    assert [(v.variant, v.n, v.mean) for v in metric(report).variants] == [("control", 1, 0.0), ("lite", 1, 0.0)]
    other = only_experiment(report, "other")
    assert (other.units, other.multiple_variant_units) == (2, 0)
    assert [(v.variant, v.mean) for v in metric(report, key="other").variants] == [("control", 0.0), ("lite", 10.0)]


def test_outcomes_before_first_exposure_are_not_counted() -> None:
    exposures = [exposure("a", "control", ts=1_000), exposure("b", "lite", ts=1_000)]
    outcomes = [outcome("a", ts=999, value=5.0), outcome("a", ts=1_000, value=2.0), outcome("b", ts=500)]

    report = run(exposures, outcomes)

    assert [(v.variant, v.mean, v.conversion) for v in metric(report).variants] == [
        ("control", 2.0, 1.0),
        ("lite", 0.0, 0.0),
    ]
    assert only_experiment(report).outcomes_before_exposure == 2


def test_units_without_outcomes_count_as_zero_and_conversion_is_share_of_positive_units() -> None:
    exposures = [exposure(u, "control") for u in "abcd"] + [exposure(u, "lite") for u in "efgh"]
    outcomes = [outcome("a", value=3.0), outcome("e"), outcome("f", value=-1.0), outcome("zz-never-exposed")]

    report = run(exposures, outcomes)

    control, lite = metric(report).variants
    assert (control.mean, control.conversion) == (0.75, 0.25)
    assert (lite.mean, lite.conversion) == (0.0, 0.25)
    assert report.unmatched_outcomes == 1


def test_requested_metric_without_outcomes_is_reported_as_zero_with_undefined_tests() -> None:
    report = run([exposure("a", "control"), exposure("c", "lite")], [])
    result = analyze(
        Exposures.from_records([exposure(u, v) for u, v in (("a", "control"), ("b", "control"), ("c", "lite"))]),
        Outcomes.from_records([]),
        AnalysisOptions(metrics=["stream"]),
    )
    assert report.metrics == ()
    lite = comparison(result, "lite")
    assert (lite.abs_lift, lite.p_value, lite.p_adjusted, lite.rel_lift, lite.significant) == (
        0.0,
        None,
        None,
        None,
        False,
    )
    assert lite.abs_ci is None and lite.z_stat is None


def test_control_is_named_control_else_first_configured_else_alphabetical() -> None:
    assert only_experiment(run([exposure("a", "b-arm"), exposure("b", "control")], [])).control == "control"
    configured = run(
        [exposure("a", "alpha"), exposure("b", "zeta")], [], expected_weights={EXP: {"zeta": 1, "alpha": 1}}
    )
    assert only_experiment(configured).control == "zeta"
    assert only_experiment(run([exposure("a", "zeta"), exposure("b", "alpha")], [])).control == "alpha"


def test_invalid_arguments_are_rejected() -> None:
    ex, out = Exposures.from_records([exposure("a", "control")]), Outcomes.from_records([])
    with pytest.raises(ValueError, match="correction"):
        analyze(ex, out, AnalysisOptions(correction="bonferroni"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        analyze(ex, out, AnalysisOptions(alpha=1.5))
    with pytest.raises(ValueError, match="expected_weights"):
        analyze(ex, out, AnalysisOptions(expected_weights={EXP: {"control": -1.0}}))


# --- input files ---------------------------------------------------------------------------------


def test_malformed_line_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "exposures.jsonl"
    path.write_text(json.dumps(exposure("a", "control")) + "\n\n" + '{"ts_ms": 1, "unit_id": "b", "experim\n')

    with pytest.raises(AnalysisInputError, match=r"exposures\.jsonl:3: not valid JSON") as info:
        load_exposures([path])
    assert (info.value.path, info.value.line) == (str(path), 3)

    bad = write_jsonl(tmp_path / "outcomes.jsonl", [outcome("a"), {"ts_ms": 5, "unit_id": "a"}])
    with pytest.raises(AnalysisInputError, match=r"outcomes\.jsonl:2: missing field 'metric'"):
        load_outcomes([bad])
    wrong_type = write_jsonl(tmp_path / "o2.jsonl", [outcome("a", value=float("nan"))])
    with pytest.raises(AnalysisInputError, match=r"o2\.jsonl:1: field 'value' must be a finite number"):
        load_outcomes([wrong_type])


def test_non_strict_loading_skips_and_counts_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "exposures.jsonl"
    lines = [json.dumps(exposure("a", "control")), "[1, 2]", json.dumps({**exposure("b", "lite"), "ts_ms": "x"})]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"unit_id": "\xff"}\n')

    loaded = load_exposures([path], strict=False)

    assert (len(loaded), loaded.read.records, loaded.read.skipped) == (1, 1, 3)
    assert loaded.read.problems[0].startswith(f"{path}:2: expected a JSON object")
    assert loaded.read.problems[1].startswith(f"{path}:3: field 'ts_ms'")
    assert loaded.read.problems[2].startswith(f"{path}:4: not valid JSON")


def test_directories_gzip_and_rotated_files_are_read(tmp_path: Path) -> None:
    logs = tmp_path / "exposures"
    (logs / "2025-11-23").mkdir(parents=True)
    write_jsonl(logs / "exposures.jsonl", [exposure("a", "control")])
    write_jsonl(logs / "exposures.jsonl.1", [exposure("b", "lite")])
    write_jsonl(logs / "2025-11-23" / "exposures.jsonl.2.gz", [exposure("c", "lite")], gz=True)
    write_jsonl(logs / "notes.txt", [exposure("ignored", "lite")])
    write_jsonl(logs / ".exposures.jsonl.swp", [exposure("ignored", "lite")])
    single_gz = write_jsonl(tmp_path / "extra.log", [exposure("d", "control")], gz=True)  # gzip found by magic

    loaded = load_exposures([logs, single_gz, logs / "exposures.jsonl"])

    assert loaded.read.files == 4
    assert sorted(map(str, loaded.unit_ids)) == ["a", "b", "c", "d"]
    outcomes = load_outcomes([write_jsonl(tmp_path / "o.jsonl.gz", [outcome("c", value=2.5)], gz=True)])
    assert comparison(analyze(loaded, outcomes), "lite").abs_lift == pytest.approx(1.25)


def test_missing_paths_corrupt_gzip_and_empty_directories_raise(tmp_path: Path) -> None:
    with pytest.raises(AnalysisInputError, match="no such file"):
        load_exposures([tmp_path / "nope.jsonl"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisInputError, match=r"no \*\.jsonl files"):
        load_outcomes([tmp_path / "empty"])
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(
        gzip.compress(b"".join(json.dumps(outcome(f"u{i}")).encode() + b"\n" for i in range(50)))[:-20]
    )
    with pytest.raises(AnalysisInputError, match=r"cut\.jsonl\.gz: unreadable"):
        load_outcomes([truncated])


# --- output --------------------------------------------------------------------------------------


def test_json_report_round_trips_through_json_dumps_with_null_for_undefined_figures() -> None:
    exposures, outcomes = _random_experiment(seed=5)
    exposures.append(exposure("solo", "heavy"))  # n = 1: std and the Welch test are undefined

    report = run(exposures, outcomes, expected_weights={EXP: {"control": 1, "lite": 1, "heavy": 0}})
    doc = report_to_json(report)

    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert doc["schema_version"] == 2
    exp = doc["experiments"][0]
    assert exp["srm"]["unexpected_variants"] == ["heavy"]
    assert doc["srm_flagged"] == [EXP]
    heavy = next(c for c in exp["metrics"][0]["comparisons"] if c["variant"] == "heavy")
    assert heavy["p_value"] is None and heavy["abs_ci"] is None
    lite = next(c for c in exp["metrics"][0]["comparisons"] if c["variant"] == "lite")
    assert set(lite) == {
        "variant", "control", "abs_lift", "abs_ci", "rel_lift", "rel_ci", "t_stat", "df",
        "p_value", "p_adjusted", "significant", "conversion",
    }  # fmt: skip
    assert lite["p_value"] == pytest.approx(comparison(report, "lite").p_value)


def test_text_report_has_one_aligned_row_per_variant_with_lift_ci_and_p_values() -> None:
    exposures, outcomes = _random_experiment(seed=9)
    report = run(exposures, outcomes)
    c = comparison(report, "lite")

    text = format_report(report)

    table = text.split("metric: stream (fixed horizon)\n", 1)[1].splitlines()
    header, control_row, lite_row = table[:3]
    assert header.split()[:5] == ["variant", "n", "mean", "std", "conv"]
    assert control_row.startswith("control") and "(control)" in control_row
    assert lite_row.startswith("lite")
    assert f"{c.abs_lift:+.4g} [" in lite_row
    assert f"{c.p_value:.3g}" in lite_row and f"{c.p_adjusted:.3g}" in lite_row
    assert header.index(" n ") + 2 == lite_row.index(" 300 ") + 4  # n is right-aligned under its header
    assert "SRM: ok" in text
