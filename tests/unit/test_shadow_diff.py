"""The shadow diff: per-request comparison, aggregates, Diffy's noise-floor rule, verdicts, report shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from encore.v1 import capture_pb2
from encore.v1 import ranking_pb2 as pb
from loadtests.replay.run import ReplayInputError, load_captures, replay_request, schedule
from loadtests.replay.shadow_diff import (
    FIELDS,
    METRICS,
    Outcome,
    Thresholds,
    build_report,
    diff_request,
    format_report,
    kendall_tau_shared,
    significant,
    summarize_pair,
    summarize_target,
)
from loadtests.stats import jsonable
from serving.capture import encode_delimited


def ok(items: str, *, scores: list[float] | None = None, latency: float = 5.0, **kw: Any) -> Outcome:
    ids = tuple(items.split())
    values = tuple(scores) if scores is not None else tuple(float(len(ids) - i) for i in range(len(ids)))
    return Outcome(status="OK", latency_ms=latency, item_ids=ids, scores=values, **kw)


def failed(code: str = "DEADLINE_EXCEEDED", latency: float = 200.0) -> Outcome:
    return Outcome(status=code, latency_ms=latency, error="boom")


META: dict[str, Any] = {
    "captures": 0,
    "targets": {},
    "speed": 1.0,
    "rate": None,
    "concurrency": 1,
    "deadline_ms": 200.0,
    "duration_s": 0.0,
    "recorded_span_s": 0.0,
    "send_lag_ms": {"p50": 0.0, "p99": 0.0},
    "surfaces": {},
    "captured_status": {},
}


# --- per request ------------------------------------------------------------------------------


def test_identical_answers_agree_fully_and_differ_in_nothing() -> None:
    a = ok("a b c d")
    d = diff_request(a, a, k=3)
    assert d.overlap == 1.0 and d.tau == 1.0
    assert d.rbo == pytest.approx(1.0)
    assert d.new_items == d.dropped_items == ()
    assert d.score_delta == 0.0
    assert d.differs == frozenset()


def test_reversed_order_keeps_the_items_but_tau_is_minus_one() -> None:
    d = diff_request(ok("a b c d"), ok("d c b a"), k=4)
    assert d.overlap == 1.0
    assert d.tau == pytest.approx(-1.0)
    assert d.rbo is not None and d.rbo < 1.0
    assert d.differs == {"order", "scores"}  # same set in the top 4, other order, other scores per item


def test_new_and_dropped_items_and_tau_on_shared_items_only() -> None:
    base = ok("a b c d e")
    other = ok("a x c b y")  # shared a, b, c: base order a b c, other order a c b
    d = diff_request(base, other, k=3)
    assert d.new_items == ("x", "y")
    assert d.dropped_items == ("d", "e")
    assert d.overlap == pytest.approx(2 / 3)  # top 3: {a, b, c} ∩ {a, x, c} = {a, c}
    assert d.tau == pytest.approx(kendall_tau_shared(["a", "b", "c"], ["a", "c", "b"]))
    assert d.tau == pytest.approx(1 / 3)  # pairs (a,b)+ (a,c)+ (b,c)− → (2 − 1) / 3
    assert {"top_k", "order"} <= d.differs


def test_tau_is_none_with_fewer_than_two_shared_items() -> None:
    assert kendall_tau_shared(["a", "b"], ["a", "z"]) is None
    assert diff_request(ok("a b"), ok("x y"), k=2).tau is None


def test_score_delta_is_the_mean_absolute_difference_on_shared_items() -> None:
    base = ok("a b c", scores=[3.0, 2.0, 1.0])
    other = ok("a c z", scores=[3.5, 0.0, 9.0])  # a: +0.5, c: −1.0; z is new and does not count
    d = diff_request(base, other, k=3)
    assert d.score_delta == pytest.approx(0.75)
    assert "scores" in d.differs


def test_a_failed_answer_has_no_agreement_metrics_but_counts_its_status_and_latency() -> None:
    d = diff_request(ok("a b", latency=4.0), failed(latency=200.0), k=2)
    assert not d.both_ok and d.base_ok and not d.other_ok
    assert d.overlap is d.rbo is d.tau is None
    assert d.latency_delta_ms == pytest.approx(196.0)
    assert d.differs == {"status"}


def test_degradation_and_model_version_differences_are_fields() -> None:
    d = diff_request(ok("a b", model_version="m1"), ok("a b", model_version="m2", degraded=("retrieval",)), k=2)
    assert d.new_degraded
    assert d.differs == {"degraded", "model_version"}


# --- aggregates -------------------------------------------------------------------------------


def test_target_summary_counts_errors_degradation_and_versions() -> None:
    answers = [ok("a", model_version="m1", bundle_version="b"), ok("a", degraded=("scoring",)), failed(), failed()]
    s = summarize_target(answers)
    assert (s["requests"], s["ok"], s["error_rate"], s["degraded_rate"]) == (4, 2, 0.5, 0.25)
    assert s["errors"] == {"DEADLINE_EXCEEDED": 2}
    assert s["degraded_stages"] == {"scoring": 1}
    assert s["model_versions"] == {"": 1, "m1": 1}
    assert s["latency_ms"]["p99"] == 200.0


def test_pair_summary_rates_count_new_errors_only() -> None:
    base = [ok("a b"), failed("INVALID_ARGUMENT"), ok("a b"), ok("a b")]
    other = [ok("a b"), failed("INVALID_ARGUMENT"), failed(), ok("b a")]
    s = summarize_pair([diff_request(b, o, k=2) for b, o in zip(base, other, strict=True)])
    assert s["compared"] == 2
    assert s["new_error_rate"] == 0.25  # the INVALID_ARGUMENT failing on both is not new
    assert s["identical_rate"] == 0.5
    assert s["field_differences"]["status"] == 1
    assert s["field_differences"]["order"] == 1
    assert set(s["field_differences"]) == set(FIELDS)


# --- noise floor ------------------------------------------------------------------------------


def test_diffy_rule_needs_an_absolute_and_a_relative_margin_over_noise() -> None:
    assert significant(0.5, 0.0, floor=0.01)
    assert not significant(0.5, 0.48, floor=0.01)  # beyond noise by 0.02 but only 2 % relative
    assert not significant(0.005, 0.0, floor=0.01)  # under the absolute floor
    assert not significant(0.0, 0.0, floor=0.0)
    assert significant(30.0, -10.0, floor=1.0)  # a negative noise (secondary faster) counts by size


def _report(candidate: list[Outcome], secondary: list[Outcome] | None, primary: list[Outcome], **kw: Any) -> Any:
    outcomes = {"primary": primary, "candidate": candidate}
    if secondary is not None:
        outcomes["secondary"] = secondary
    return jsonable(build_report(outcomes, k=3, thresholds=Thresholds(**kw), replay=META))


def test_a_difference_the_secondary_also_shows_is_noise_not_a_regression() -> None:
    primary = [ok("a b c d")] * 10
    shuffled = [ok("a b c d")] * 6 + [ok("d c b a")] * 4  # 40 % of answers reordered, on both
    report = _report(shuffled, shuffled, primary, max_rbo_drop=0.01)
    m = report["noise_floor"]["metrics"]["rbo_drop"]
    assert m["value"] == pytest.approx(m["noise"]) and m["value"] > 0.05
    assert not m["significant"]
    assert not report["noise_floor"]["fields"]["order"]["significant"]
    assert report["passed"]
    # the same candidate without a secondary: the noise is assumed 0 and the change crosses the limit
    alone = _report(shuffled, None, primary, max_rbo_drop=0.01)
    assert not alone["noise_floor"]["measured"]
    assert alone["noise_floor"]["metrics"]["rbo_drop"]["significant"]
    assert "rbo_drop" in alone["significant"]
    assert not alone["passed"]


def test_a_candidate_beyond_the_noise_fails_the_strict_threshold_and_passes_a_loose_one() -> None:
    primary = [ok("a b c d")] * 10
    secondary = [ok("a b c d")] * 9 + [ok("a b d c")]
    candidate = [ok("x y c d")] * 10
    strict = _report(candidate, secondary, primary, max_rbo_drop=0.05, min_overlap=0.2)
    checks = {c["name"]: c for c in strict["verdict"]["checks"]}
    assert not checks["max_rbo_drop"]["passed"]
    assert checks["max_rbo_drop"]["adjusted"] == pytest.approx(
        strict["noise_floor"]["metrics"]["rbo_drop"]["value"] - strict["noise_floor"]["metrics"]["rbo_drop"]["noise"]
    )
    assert checks["min_overlap"]["value"] == pytest.approx(1 / 3)  # {c} of top 3 shared
    assert checks["min_overlap"]["passed"]
    assert {"rbo_drop", "overlap_drop", "new_items", "dropped_items"} <= set(strict["significant"])
    assert not strict["passed"]
    loose = _report(candidate, secondary, primary, max_rbo_drop=0.9, min_overlap=0.2)
    assert loose["passed"]


def test_latency_and_error_checks_subtract_the_secondary_difference() -> None:
    primary = [ok("a", latency=10.0)] * 100
    secondary = [ok("a", latency=18.0)] * 100  # two identical servers 8 ms apart at p99
    candidate = [ok("a", latency=25.0)] * 98 + [failed(), failed()]
    report = _report(candidate, secondary, primary, max_p99_increase_ms=5.0, max_error_rate=0.05)
    checks = {c["name"]: c for c in report["verdict"]["checks"]}
    assert checks["max_p99_increase_ms"]["adjusted"] == pytest.approx((200.0 - 10.0) - 8.0)
    assert not checks["max_p99_increase_ms"]["passed"]
    assert checks["max_error_rate"]["adjusted"] == pytest.approx(0.02)
    assert checks["max_error_rate"]["passed"]


def test_nothing_answered_by_both_fails_the_agreement_checks() -> None:
    report = _report([failed()] * 3, None, [ok("a b")] * 3)
    checks = {c["name"]: c for c in report["verdict"]["checks"]}
    assert not checks["max_rbo_drop"]["passed"] and checks["max_rbo_drop"]["note"]
    assert not report["passed"]


# --- report -----------------------------------------------------------------------------------


def test_report_json_has_stable_keys_and_is_strict_json() -> None:
    primary = [ok("a b c")] * 4
    report = _report([ok("a c b")] * 4, [ok("a b c")] * 4, primary)
    assert list(report) == [
        "schema",
        "replay",
        "k",
        "targets",
        "agreement",
        "noise_floor",
        "thresholds",
        "verdict",
        "passed",
        "significant",
    ]
    assert set(report["targets"]) == {"primary", "candidate", "secondary"}
    assert set(report["noise_floor"]["metrics"]) == set(METRICS)
    for m in report["noise_floor"]["metrics"].values():
        assert set(m) == {"value", "noise", "excess", "significant"}
    assert [c["name"] for c in report["verdict"]["checks"]] == [
        "max_rbo_drop",
        "min_overlap",
        "max_p99_increase_ms",
        "max_error_rate",
        "max_degraded_rate",
    ]
    assert set(report["agreement"]["candidate"]["rbo"]) == {"n", "mean", "p10", "p50", "p90"}
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report


def test_text_report_has_every_section_and_marks_failures() -> None:
    primary = [ok("a b c")] * 4
    text = format_report(_report([ok("x y z")] * 4, [ok("a b c")] * 4, primary))
    for section in ("REPLAY", "AGREEMENT", "LATENCY", "ERRORS AND DEGRADATION", "VERDICT  FAIL"):
        assert section in text
    assert "SIGNIFICANT" in text
    assert "max_rbo_drop" in text and "FAIL" in text
    verdict_only = format_report(_report([ok("x y z")] * 4, None, primary), verdict_only=True)
    assert verdict_only.startswith("VERDICT  FAIL  (thresholds on the difference noise 0)")


def test_without_a_candidate_nothing_is_gated() -> None:
    report = jsonable(build_report({"primary": [ok("a")]}, k=3, thresholds=Thresholds(), replay=META))
    assert report["verdict"] is None and report["passed"]
    assert "no --candidate" in format_report(report)


# --- replay helpers ---------------------------------------------------------------------------


def test_schedule_scales_recorded_gaps_or_spaces_at_a_fixed_rate() -> None:
    assert schedule([1000, 1100, 1500], speed=2.0) == pytest.approx([0.0, 0.05, 0.25])
    assert schedule([1000, 1100, 1500], rate=10.0) == pytest.approx([0.0, 0.1, 0.2])
    assert schedule([5, 6]) == pytest.approx([0.0, 0.001])


def test_replayed_request_keeps_the_query_and_suffixes_the_request_id() -> None:
    captured = pb.RankRequest(
        user_id="u1",
        surface=pb.SURFACE_NOW_PLAYING,
        seed_item_id="i00001",
        limit=7,
        request_id="r" * 128,
        debug=True,
        context=pb.RequestContext(device="ios"),
    )
    sent = replay_request(captured, "run1", 0)
    assert (sent.user_id, sent.surface, sent.seed_item_id, sent.limit, sent.context.device) == (
        "u1",
        pb.SURFACE_NOW_PLAYING,
        "i00001",
        7,
        "ios",
    )
    assert not sent.debug
    assert sent.request_id.endswith("~replay-run1") and len(sent.request_id) == 128
    assert replay_request(pb.RankRequest(user_id="u"), "run1", 3).request_id == "capture-3~replay-run1"


def test_load_captures_orders_by_arrival_and_rejects_bad_logs(tmp_path: Any) -> None:
    log = tmp_path / "captures-1.binpb"
    messages = [capture_pb2.CapturedRank(ts_ms=t, request=pb.RankRequest(user_id=f"u{t}")) for t in (30, 10, 20)]
    log.write_bytes(b"".join(encode_delimited(m) for m in messages))
    assert [c.ts_ms for c in load_captures([tmp_path])] == [10, 20, 30]
    assert [c.ts_ms for c in load_captures([log], limit=2)] == [10, 30]  # the first 2 in the file, ordered
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplayInputError, match="no captured requests"):
        load_captures([tmp_path / "empty"])
    with pytest.raises(ReplayInputError, match="no such capture file"):
        load_captures([tmp_path / "missing.binpb"])
    log.write_bytes(log.read_bytes()[:-3])
    with pytest.raises(ReplayInputError, match="cannot read the capture log"):
        load_captures([log])
