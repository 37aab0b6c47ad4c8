"""The experiment lifecycle: legal transitions, refused ones naming their rule, and ramping that
never moves an assigned user to another arm."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from ranking.types import Surface
from serving.experiments import lifecycle
from serving.experiments.assignment import Assigner
from serving.experiments.config import parse_experiments
from serving.experiments.lifecycle import IllegalTransition

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def spec(key: str = "cap", weights: tuple[float, float] = (0.5, 0.5), coverage: float = 0.2) -> dict[str, Any]:
    return {
        "key": key,
        "surface": "home",
        "coverage": coverage,
        "variants": [
            {"key": "control", "weight": weights[0]},
            {"key": "treatment", "weight": weights[1], "params": {"diversity_cap": 3}},
        ],
    }


def test_draft_start_ramp_stop_and_the_input_is_never_mutated() -> None:
    empty: dict[str, Any] = {}
    drafted = lifecycle.create(empty, {**spec(), "status": "running"})  # created as a draft regardless
    assert empty == {} and lifecycle.find(drafted, "cap")["status"] == "draft"
    running = lifecycle.start(drafted, "cap", NOW)
    assert lifecycle.find(running, "cap")["start"] == NOW.isoformat()
    ramped = lifecycle.ramp(running, "cap", 0.8)
    stopped = lifecycle.stop(ramped, "cap", NOW + dt.timedelta(days=7))
    assert lifecycle.find(stopped, "cap")["status"] == "stopped"
    assert lifecycle.find(ramped, "cap")["status"] == "running"  # each step returned a new document
    parse_experiments(stopped, "lifecycle")  # still a valid document


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda d: lifecycle.ramp(d, "cap", 0.9), "no-ramp-after-stop"),
        (lambda d: lifecycle.start(d, "cap", NOW), "draft-only-start"),
        (lambda d: lifecycle.stop(d, "cap", NOW), "running-only-stop"),
        (lambda d: lifecycle.create(d, spec()), "unique-key"),
        (lambda d: lifecycle.ramp(d, "nope", 0.5), "known-key"),
    ],
)
def test_a_stopped_experiment_refuses_each_change_naming_the_rule(change: Any, rule: str) -> None:
    stopped = lifecycle.stop(lifecycle.start(lifecycle.create({}, spec()), "cap", NOW), "cap", NOW)
    with pytest.raises(IllegalTransition) as caught:
        change(stopped)
    assert caught.value.rule == rule and str(caught.value).startswith(f"{rule}: ")


def test_weights_and_params_are_frozen_once_started_but_free_in_a_draft() -> None:
    draft = lifecycle.create({}, spec())
    changed = lifecycle.update(draft, "cap", {"variants": spec(weights=(0.3, 0.7))["variants"]})
    assert lifecycle.find(changed, "cap")["variants"][0]["weight"] == 0.3
    running = lifecycle.start(changed, "cap", NOW)
    with pytest.raises(IllegalTransition, match="frozen-once-started: 'cap' is running: variants cannot change"):
        lifecycle.update(running, "cap", {"variants": spec(weights=(0.5, 0.5))["variants"]})
    with pytest.raises(IllegalTransition, match="frozen-once-started"):
        lifecycle.update(running, "cap", {"seed": "other"})
    assert lifecycle.find(lifecycle.update(running, "cap", {"coverage": 0.5}), "cap")["coverage"] == 0.5


def test_ramping_up_never_moves_an_assigned_user_to_another_arm() -> None:
    running = lifecycle.start(lifecycle.create({}, spec(coverage=0.1, weights=(0.3, 0.7))), "cap", NOW)
    stages = [running] + [lifecycle.ramp(running, "cap", c) for c in (0.25, 0.5, 1.0)]
    assigners = [Assigner(parse_experiments(d, "ramp"), clock=lambda: NOW) for d in stages]
    users = [f"user-{i}" for i in range(10_000)]
    arms: list[dict[str, str]] = []
    for assigner in assigners:
        arms.append(
            {u: a.variant for u in users for a in assigner.assign(u, Surface.HOME).assignments if a.experiment == "cap"}
        )
    for smaller, larger in itertools.pairwise(arms):
        assert smaller.keys() <= larger.keys()
        assert all(larger[u] == variant for u, variant in smaller.items())
    assert 800 < len(arms[0]) < 1200 and len(arms[-1]) == 10_000
