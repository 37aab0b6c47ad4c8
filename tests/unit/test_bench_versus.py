"""The versus run's pure parts: /proc CPU parsing, ratios, CPU per request, capacity, goodput, the
rate ladder, log problem counts and the table."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest

from loadtests.bench.cpu import CLOCK_TICKS_PER_S, cpu_delta, parse_cpu_ticks, tree_cpu_seconds
from loadtests.bench.plan import VERSUS_RATES, geometric_rates
from loadtests.bench.versus_report import (
    busiest_share,
    capacity_rps,
    count_problem_lines,
    cpu_per_request_ms,
    format_versus,
    goodput_ratio,
    metric_total,
    pool_cpu,
    ratio,
)

# /proc/<pid>/stat of a process whose command name holds spaces and parentheses; utime 1500 and
# stime 250 ticks (fields 14 and 15), cutime 9999 / cstime 8888 (16 and 17) must not count.
STAT = "4242 (python (worker 1)) S 4200 4200 30000 0 -1 4194560 5000 0 12 0 1500 250 9999 8888 20 0 9 0"


def test_cpu_ticks_are_utime_plus_stime_after_the_command_name() -> None:
    assert parse_cpu_ticks(STAT) == 1750
    assert parse_cpu_ticks("1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 7 8 0 0 20 0 1 0") == 15


def test_cpu_of_this_process_is_read_from_proc() -> None:
    spent = tree_cpu_seconds(os.getpid())
    assert os.getpid() in spent and spent[os.getpid()] >= 0
    assert CLOCK_TICKS_PER_S > 0


def test_cpu_delta_counts_a_new_process_from_zero_and_drops_an_exited_one() -> None:
    assert cpu_delta({1: 2.0, 2: 1.0}, {1: 2.5, 3: 0.25}) == {1: 0.5, 3: 0.25}


def test_ratio_is_none_without_a_usable_denominator() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0.0) is None
    assert ratio(None, 2.0) is None
    assert ratio(3.0, None) is None
    assert ratio(math.nan, 2.0) is None
    assert ratio(3.0, math.nan) is None


def test_cpu_per_request_is_milliseconds_per_ok_answer() -> None:
    assert cpu_per_request_ms(2.5, 500) == 5.0
    assert cpu_per_request_ms(2.5, 0) is None


def test_capacity_is_the_cores_left_by_the_generator_over_the_cpu_per_request() -> None:
    # 2 cores, the generator uses 0.4 of one: 1.6 CPU s per s / 4 ms per request = 400 req/s
    assert capacity_rps(2, 0.4, 4.0) == pytest.approx(400.0)
    assert capacity_rps(2, 0.0, 5.0) == pytest.approx(400.0)
    assert capacity_rps(2, 2.5, 4.0) == 0.0  # a generator using every core leaves nothing
    assert capacity_rps(2, 0.4, None) is None
    assert capacity_rps(2, 0.4, 0.0) is None


def test_goodput_ratio_is_ok_per_second_over_capacity() -> None:
    assert goodput_ratio(300.0, 400.0) == 0.75
    assert goodput_ratio(300.0, None) is None
    assert goodput_ratio(300.0, 0.0) is None


def test_cpu_runs_pool_by_summing_cpu_and_answers() -> None:
    runs = [
        {"ok": 400, "errors": 0, "server_cpu_s": 2.0, "redis_cpu_s": 0.1, "wall_s": 5.0, "client_cpu_share": 0.1},
        {"ok": 600, "errors": 2, "server_cpu_s": 4.0, "redis_cpu_s": 0.3, "wall_s": 5.0, "client_cpu_share": 0.3},
    ]
    pooled = pool_cpu(runs)
    assert pooled["ok"] == 1000 and pooled["errors"] == 2 and pooled["runs"] == 2
    assert pooled["cpu_ms_per_request"] == pytest.approx(6.0)  # not the mean of 5.0 and 6.67
    assert pooled["redis_cpu_ms_per_request"] == pytest.approx(0.4)
    assert pooled["server_cpu_share"] == pytest.approx(0.6)
    assert pooled["client_cpu_share"] == pytest.approx(0.2)


def test_geometric_rates_grow_by_the_factor_rounded_to_tens() -> None:
    assert geometric_rates(100, 1.4, 5) == (100.0, 140.0, 200.0, 270.0, 380.0)
    assert geometric_rates(5, 2, 2) == (10.0, 10.0)  # at least 10
    assert list(VERSUS_RATES) == sorted(VERSUS_RATES) and VERSUS_RATES[0] == 150.0
    with pytest.raises(ValueError):
        geometric_rates(100, 1.0, 3)


def test_busiest_share_is_the_busiest_workers_part_of_the_workers_cpu() -> None:
    assert busiest_share([3.0, 1.0]) == 0.75
    assert busiest_share([2.0, 2.0]) == 0.5
    assert busiest_share([]) is None
    assert busiest_share([0.0, 0.0]) is None


EXPOSITION = """\
# HELP encore_shed_requests_total Calls refused by admission
# TYPE encore_shed_requests_total counter
encore_shed_requests_total{method="Rank",reason="in_flight"} 4.0
encore_shed_requests_total{method="Rank",reason="queue_delay"} 6.0
encore_shed_requests_created{method="Rank",reason="in_flight"} 1.7e+09
encore_shed_requests_totalish 100.0
encore_expired_requests_total 3.0
"""


def test_metric_total_sums_every_label_set_of_exactly_that_metric() -> None:
    assert metric_total(EXPOSITION, "encore_shed_requests_total") == 10.0
    assert metric_total(EXPOSITION, "encore_expired_requests_total") == 3.0
    assert metric_total(EXPOSITION, "encore_missing_total") == 0.0


def test_problem_lines_are_those_naming_a_traceback_or_an_exception() -> None:
    log = "\n".join(
        [
            "INFO serving ok",
            "Traceback (most recent call last):",
            '  File "x.py", line 1',
            "ValueError: boom",
            "ERROR Exception in callback",
        ]
    )
    assert count_problem_lines(log) == 2
    assert count_problem_lines("") == 0


def _summary(p50: float) -> dict[str, float]:
    return {"n": 10.0, "mean": p50, "p50": p50, "p90": p50, "p99": p50 * 2, "p999": p50 * 2, "max": p50 * 3}


def test_the_table_shows_every_part_and_the_capacity_formula() -> None:
    lat = {
        n: {
            "server_total_ms": _summary(ms),
            "client_ms": _summary(ms + 1),
            "stages_p50_ms": {"scoring": ms / 3},
            "server_ratio": ms / 3.0,
            "client_ratio": (ms + 1) / 4.0,
        }
        for n, ms in (("encore", 3.3), ("encore_no_cascade", 4.5), ("reference", 3.0))
    }
    cpu = {
        n: {
            **pool_cpu(
                [
                    {
                        "ok": 500,
                        "errors": 0,
                        "server_cpu_s": s,
                        "redis_cpu_s": 0.05,
                        "wall_s": 5.0,
                        "client_cpu_share": 0.1,
                    }
                ]
            ),
            "ratio": 1.0,
        }
        for n, s in (("encore", 2.0), ("reference", 1.5), ("encore_2w", 2.1), ("reference_2w", 1.6))
    }
    step = {"rate": 100.0, "held": True, "latency_ms": _summary(4.0), "worker_cpu_s": [1.0, 1.0]}
    miss = {"rate": 140.0, "held": False, "latency_ms": _summary(30.0), "worker_cpu_s": [3.0, 1.0]}
    overload: dict[str, Any] = {
        "multiple": 2.0,
        "rate": 280,
        "send_lag_p99_ms": 1.5,
        "sent": 1400,
        "ok": 1250,
        "degraded": 7,
        "ok_per_s": 250.0,
        "capacity": 380.0,
        "goodput_ratio": 0.66,
        "capacity_at_load": 500.0,
        "goodput_ratio_at_load": 0.5,
        "cpu_ms_per_request": 3.25,
        "resource_exhausted": {"count": 12, "p50": 1.5, "p99": 3.0},
        "deadline_exceeded": {"count": 3, "p50": 101.0, "p99": 120.0},
        "cancelled": {"count": 4, "p50": 99.0, "p99": 104.0},
        "other_errors": 0,
        "server_shed": 12.0,
        "server_expired": None,
        "client_cpu_share": 0.2,
        "server_cpu_share": 1.7,
        "log_problems": 0,
        "health": "SERVING",
    }
    versus = {
        "bundle": "hetrec-bench",
        "cores": 2,
        "plan": {
            "retrieval_size": 500,
            "popularity_size": 20,
            "rounds": 5,
            "requests": 200,
            "cpu_rate": 100.0,
            "deadline_ms": 100.0,
        },
        "latency": lat,
        "cpu": cpu,
        "sustained": {
            "encore_2w": {"rate": 100.0, "steps": [step, miss]},
            "reference_2w": {"rate": None, "steps": [miss]},
            "ratio": None,
        },
        "overload": {
            "formula": "capacity = (cores - ...)",
            "cpu_ms_per_request": 4.2,
            "cpu_ms_per_request_at_load": 3.2,
            "steps": [overload],
        },
    }
    text = format_versus(versus)
    for expected in (
        "(a)",
        "(b)",
        "(c)",
        "(d)",
        "capacity = (cores - ...)",
        "1.10x",
        "100:8.0/50%  140:60.0/75%!",
        "3.25",
        "99.0",
        "SERVING",
    ):
        assert expected in text, expected
    assert "straight-line reference" in text and "reference, --workers 2" in text
    assert format_versus({"bundle": "b", "cores": 2, "plan": versus["plan"]}).count("\n") < 5  # nothing measured yet
