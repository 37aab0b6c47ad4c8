"""The benchmark's pure helpers: the rate-stepping decision, /proc parsing, profiles, the settings file."""

from __future__ import annotations

import math

from loadtests.bench.memory import descendants, memory_mib, parse_ppid, parse_smaps_rollup
from loadtests.bench.profiling import top_frames
from loadtests.bench.verdict import judge_step, should_continue, steady_rate, sustained_rate
from loadtests.bench.workload import settings_yaml


def _step(p99: float, errors: float = 0.0, degraded: float = 0.0) -> dict[str, object]:
    return {"latency_ms": {"p99": p99}, "error_ratio": errors, "degraded_ratio": degraded}


def test_judge_step_needs_p99_errors_and_degradations_within_limits() -> None:
    assert judge_step(_step(25.0)).held  # the limit itself holds
    missed = judge_step(_step(25.1))
    assert not missed.held and "p99" in missed.reasons[0]
    assert not judge_step(_step(5.0, errors=0.01)).held  # < 1 % errors, so exactly 1 % fails
    assert judge_step(_step(5.0, errors=0.0099)).held
    assert not judge_step(_step(5.0, degraded=0.02)).held
    assert not judge_step(_step(math.nan)).held  # nothing answered
    assert len(judge_step(_step(30.0, errors=0.5, degraded=0.5)).reasons) == 3
    assert judge_step(_step(14.0), p99_limit_ms=15.0).held


def test_stepping_stops_after_two_failures_in_a_row() -> None:
    assert should_continue([])
    assert should_continue([True, True])
    assert should_continue([True, False])  # one miss may be noise on a shared machine
    assert should_continue([True, False, True, False])
    assert not should_continue([True, False, False])
    assert not should_continue([True, False, False, False], max_consecutive_failures=3)
    assert should_continue([True, False, False], max_consecutive_failures=3)


def test_sustained_rate_is_the_highest_rate_that_held() -> None:
    assert sustained_rate([(50, True), (100, True), (150, False), (200, False)]) == 100
    assert sustained_rate([(50, True), (100, False), (150, True), (200, False), (300, False)]) == 150
    assert sustained_rate([(50, False), (100, False)]) is None
    assert sustained_rate([]) is None


def test_steady_rate_is_half_the_sustained_rate_rounded_down() -> None:
    assert steady_rate(300.0, [50, 100]) == 150.0
    assert steady_rate(250.0, [50, 100]) == 120.0
    assert steady_rate(15.0, [50, 100]) == 10.0
    assert steady_rate(None, [50, 100]) == 50.0
    assert steady_rate(400.0, [50], fraction=0.8) == 320.0


SMAPS_ROLLUP = """\
55d0c1a2b000-7ffd5c9f1000 ---p 00000000 00:00 0                          [rollup]
Rss:              524288 kB
Pss:              300000 kB
Pss_Anon:         100000 kB
Shared_Clean:     262144 kB
Shared_Dirty:          0 kB
Private_Clean:      1024 kB
Private_Dirty:    261120 kB
Referenced:       524288 kB
Swap:                  0 kB
Locked:                0 kB
"""


def test_smaps_rollup_parsing_and_mib_figures() -> None:
    fields = parse_smaps_rollup(SMAPS_ROLLUP)
    assert fields["Rss"] == 524288
    assert fields["Private_Dirty"] == 261120
    assert "55d0c1a2b000-7ffd5c9f1000 ---p 00000000 00" not in fields  # the header line is skipped
    mib = memory_mib(fields)
    assert mib["rss"] == 512.0
    assert mib["private"] == 256.0
    assert mib["shared"] == 256.0
    assert math.isclose(mib["pss"], 300000 / 1024)
    assert memory_mib({})["rss"] == 0.0


def test_parse_ppid_survives_spaces_and_parentheses_in_the_command_name() -> None:
    assert parse_ppid("1234 (python3) S 77 1234 1234 0 -1 4194560") == 77
    assert parse_ppid("1234 (weird (name) x) R 88 1 1 0") == 88


def test_descendants_walks_the_whole_tree() -> None:
    parents = {10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20}
    assert descendants(10, parents) == [11, 12, 13]
    assert descendants(13, parents) == []
    assert descendants(1, parents) == [10, 20, 11, 12, 21, 13]


def test_top_frames_separates_idle_samples_and_attributes_busy_ones() -> None:
    collapsed = "\n".join(
        [
            # main thread: 6 busy samples in the pipeline, 4 idle in the event loop's epoll
            "thread (1): MainThread;main (cli/main.py:10);Rank (serving/servicer.py:5);"
            "execute (ranking/pipeline.py:80);select (ranking/selectors/artist_diversity.py:30) 6",
            "thread (1): MainThread;main (cli/main.py:10);run_forever (asyncio/base_events.py:600);"
            "EpollSelector.select (selectors.py:468) 4",
            # executor threads: 2 busy in ONNX, 8 waiting for work
            "thread (2): encore-cpu_0;Thread.run (threading.py:982);_worker (concurrent/futures/thread.py:83);"
            "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:220) 2",
            "thread (3): encore-cpu_1;Thread.run (threading.py:982);_worker (concurrent/futures/thread.py:81) 8",
            "thread (4): Thread-2 (_poll_wrapper);Thread.run (threading.py:982) 5",
            "not a stack line",
        ]
    )
    prof = top_frames(collapsed)
    assert prof["samples"] == 25
    assert math.isclose(prof["busy_share"], 8 / 25)
    assert dict(prof["threads"]) == {"MainThread": 0.75, "encore-cpu": 0.25}
    assert prof["self"][0] == ("select (ranking/selectors/artist_diversity.py)", 0.75)
    total = dict(prof["total"])
    assert total["execute (ranking/pipeline.py)"] == 0.75
    assert "main (cli/main.py)" not in total  # the entry point is on every sample
    assert "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py)" not in total  # not project code
    assert top_frames("") == {"samples": 0, "busy_share": 0.0, "threads": [], "self": [], "total": []}


def test_settings_yaml_sets_both_surfaces() -> None:
    import yaml

    data = yaml.safe_load(settings_yaml(500, 20))
    assert data == {
        "surfaces": {
            "home": {"retrieval_size": 500, "popularity_size": 20},
            "now_playing": {"retrieval_size": 500, "popularity_size": 20},
        }
    }


def test_settings_yaml_passes_the_cascade_size_and_shadow_model_to_both_surfaces() -> None:
    import yaml

    data = yaml.safe_load(settings_yaml(500, 20, "lite", 0))
    expected = {"retrieval_size": 500, "popularity_size": 20, "shadow_model": "lite", "cascade_size": 0}
    assert data == {"surfaces": {"home": expected, "now_playing": expected}}


def test_jsonable_writes_paths_as_strings_and_non_finite_floats_as_null() -> None:
    from pathlib import Path

    from loadtests.stats import jsonable

    assert jsonable({"checkout": Path("/tmp/before"), "x": [float("nan"), 1.5]}) == {
        "checkout": "/tmp/before",
        "x": [None, 1.5],
    }
