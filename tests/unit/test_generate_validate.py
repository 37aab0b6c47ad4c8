"""Generator → gate: every known mistake of a generator is caught with a message naming it, the
loop feeds problems back and stops after a bounded number of attempts."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from experimentation.gate import Gate
from experimentation.generator import Candidate, GateRefused, PlanGenerator, generate_validated
from experimentation.planner import Intent, MetricEstimate, Plan, TrafficEstimate, plan

LIVE: dict[str, Any] = {
    "layers": [
        {
            "key": "home-experiments",
            "surface": "home",
            "experiments": [
                {
                    "key": "old",
                    "seed": "old-seed",
                    "coverage": 1.0,
                    "status": "running",
                    "range": [0.0, 0.5],
                    "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
                }
            ],
        }
    ]
}
GATE = Gate(known_models={"lgbm-v3", "lgbm-v3-lite"}, traffic={"home": TrafficEstimate(2_000.0, "stated")})
INTENT = Intent(
    "lite", "home", {"control": {}, "lite": {"model_version": "lgbm-v3-lite"}}, "stream", 0.1, ("skip",), 14.0
)
PLAN = plan(INTENT, LIVE, MetricEstimate(1.0, 1.0, "stated"), TrafficEstimate(2_000.0, "stated"))


def mistake(change: Callable[[dict[str, Any]], None]) -> Candidate:
    good = PlanGenerator().generate(PLAN, [])
    experiment = copy.deepcopy(dict(good.experiment))
    change(experiment)
    return Candidate(good.layer, experiment)


def set_weights(e: dict[str, Any]) -> None:
    e["variants"][1]["weight"] = 0.7


def unknown_model(e: dict[str, Any]) -> None:
    e["variants"][1]["params"]["model_version"] = "lgbm-v9"


def overlap(e: dict[str, Any]) -> None:
    e["range"] = [0.4, 0.6]


def no_guardrails(e: dict[str, Any]) -> None:
    e["metrics"]["guardrails"] = []


def reused_seed(e: dict[str, Any]) -> None:
    e["seed"] = "old-seed"


def underpowered(e: dict[str, Any]) -> None:
    e["range"] = [0.5, 0.51]


def taken_key(e: dict[str, Any]) -> None:
    e["key"] = "old"


MISTAKES = [
    (set_weights, "weights must sum to 1, got 1.2"),
    (unknown_model, "unknown model version 'lgbm-v9'"),
    (overlap, "[0.4, 0.6) of 'lite' overlaps [0, 0.5) of 'old'"),
    (no_guardrails, "metrics.guardrails: at least one guardrail metric"),
    (reused_seed, "seed 'old-seed'"),
    (underpowered, "lite: underpowered: its 1% of 2,000 users a day reaches 140 users per arm in 14 days, 1,570"),
    (taken_key, "unique-key: an experiment 'old' exists already"),
]


def test_the_plan_generator_passes_the_gate_first_time() -> None:
    generated = generate_validated(PlanGenerator(), PLAN, LIVE, GATE)
    assert generated.refused == []
    layer = generated.document["layers"][0]
    assert [e["key"] for e in layer["experiments"]] == ["old", "lite"]
    assert layer["experiments"][1]["status"] == "draft" and layer["experiments"][1]["range"] == [0.5, 0.65]


@pytest.mark.parametrize(("make", "message"), MISTAKES, ids=[m.__name__ for m, _ in MISTAKES])
def test_each_known_mistake_is_caught_with_a_message_naming_it(
    make: Callable[[dict[str, Any]], None], message: str
) -> None:
    class Once:
        name = make.__name__

        def generate(self, plan: Plan, feedback: Sequence[str]) -> Candidate:
            return mistake(make)

    with pytest.raises(GateRefused) as caught:
        generate_validated(Once(), PLAN, LIVE, GATE, attempts=1)
    problems = caught.value.rounds[0]
    assert any(message in p for p in problems), problems
    print(f"| {make.__name__} | {next(p for p in problems if message in p)} |")


def test_the_loop_feeds_problems_back_until_a_candidate_passes() -> None:
    seen: list[list[str]] = []

    class Learner:
        """Makes every known mistake in turn, then listens."""

        name = "learner"

        def generate(self, plan: Plan, feedback: Sequence[str]) -> Candidate:
            seen.append(list(feedback))
            if len(seen) <= len(MISTAKES):
                return mistake(MISTAKES[len(seen) - 1][0])
            return PlanGenerator().generate(plan, feedback)

    generated = generate_validated(Learner(), PLAN, LIVE, GATE, attempts=len(MISTAKES) + 1)
    assert len(generated.refused) == len(MISTAKES) and seen[0] == []
    assert all(any(message in p for p in seen[i + 1]) for i, (_, message) in enumerate(MISTAKES))
    with pytest.raises(GateRefused, match=r"generator 'learner': 3 attempt\(s\), none passed the gate"):
        seen.clear()
        generate_validated(Learner(), PLAN, LIVE, GATE, attempts=3)


def test_an_import_may_not_change_a_started_experiments_arms_or_restart_a_stopped_one() -> None:
    running = copy.deepcopy(LIVE)
    changed = copy.deepcopy(LIVE)
    changed["layers"][0]["experiments"][0]["variants"][0]["weight"] = 0.4
    changed["layers"][0]["experiments"][0]["variants"][1]["weight"] = 0.6
    problems = GATE.check_import(running, changed)
    assert any(p.startswith("frozen-once-started: 'old' is running: variants cannot change") for p in problems)
    stopped = copy.deepcopy(LIVE)
    stopped["layers"][0]["experiments"][0]["status"] = "stopped"
    assert any(p.startswith("no-ramp-after-stop: 'old' is stopped") for p in GATE.check_import(stopped, running))
    ramped = copy.deepcopy(LIVE)
    ramped["layers"][0]["experiments"][0]["coverage"] = 0.5
    assert not [p for p in GATE.check_import(running, ramped) if "frozen" in p or "stopped" in p]
