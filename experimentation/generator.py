"""Generators turn a plan into an experiment definition; the gate decides whether it may be committed.

``Generator`` is the interface: ``generate(plan, feedback)`` returns the layer and the experiment
mapping (the experiments document's form). ``PlanGenerator`` is the deterministic one shipped
here: it writes exactly what the planner proposed. Any other generator (a language-model one, say)
plugs in behind the same interface and goes through the same gate: ``generate_validated`` feeds
the gate's problems back as ``feedback`` for at most ``attempts`` rounds and refuses with every
round's problems when none passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from experimentation.gate import Gate
from experimentation.planner import Plan
from serving.experiments.config import ExperimentError
from serving.experiments.lifecycle import IllegalTransition, create


@dataclass(frozen=True)
class Candidate:
    """A generated experiment and the layer it goes into."""

    layer: str
    experiment: Mapping[str, Any]


class Generator(Protocol):
    name: str

    def generate(self, plan: Plan, feedback: Sequence[str]) -> Candidate:
        """An experiment for ``plan``; ``feedback`` lists the gate's problems with the previous attempt."""


class PlanGenerator:
    """Writes the plan as it is (deterministic; ignores feedback: the plan is already valid or not)."""

    name = "plan"

    def generate(self, plan: Plan, feedback: Sequence[str]) -> Candidate:
        intent = plan.intent
        rng = plan.range if plan.range is not None else (0.0, 0.0)
        variants = [
            {"key": key, "weight": weight, **({"params": dict(params)} if params else {})}
            for (key, params), weight in zip(intent.variants.items(), plan.weights, strict=True)
        ]
        return Candidate(
            layer=plan.layer,
            experiment={
                "key": intent.key,
                "surface": intent.surface,
                "seed": intent.key,
                "coverage": plan.coverage,
                "range": [rng[0], rng[1]],
                "variants": variants,
                "metrics": {
                    "primary": intent.primary_metric,
                    "guardrails": list(intent.guardrails),
                    "mde": intent.mde,
                    "users_per_arm": plan.users_per_arm,
                    "max_days": intent.max_days,
                },
            },
        )


class GateRefused(ExperimentError):
    """No generated candidate passed the gate; ``rounds`` holds each attempt's problems."""

    def __init__(self, generator: str, rounds: list[list[str]]) -> None:
        last = "; ".join(rounds[-1]) if rounds else "no attempt"
        super().__init__(f"generator {generator!r}: {len(rounds)} attempt(s), none passed the gate; last: {last}")
        self.rounds = rounds


@dataclass(frozen=True)
class Generated:
    """A document that passed the gate, and the problems of the attempts before it."""

    document: dict[str, Any]
    candidate: Candidate
    refused: list[list[str]]


def generate_validated(
    generator: Generator, plan: Plan, document: Mapping[str, Any], gate: Gate, attempts: int = 3
) -> Generated:
    """Generate → gate, feeding problems back, at most ``attempts`` times (``GateRefused`` after)."""
    rounds: list[list[str]] = []
    feedback: list[str] = []
    for _ in range(attempts):
        candidate = generator.generate(plan, feedback)
        key = str(candidate.experiment.get("key"))
        try:
            changed = create(document, candidate.experiment, candidate.layer)
        except IllegalTransition as exc:
            feedback = [str(exc)]
        else:
            feedback = gate.check(changed, key)
            if not feedback:
                return Generated(changed, candidate, rounds)
        rounds.append(feedback)
    raise GateRefused(generator.name, rounds)
