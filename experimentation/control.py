"""The experimentation control plane's operations, over the store (no gRPC here: ``experimentation.api``).

Every change reads the revision it is based on (``Audit.base``, or the head), applies a lifecycle
change (``serving.experiments.lifecycle``), passes the gate and commits compare-and-set; so a
change is either committed whole as a new revision or not at all. What the gate checks depends on
the change: creating and starting an experiment run the whole gate (document validity, metrics
declared, powered); ramping and stopping check the document's validity only, so an experiment can
always be stopped or ramped down, e.g. when a guardrail goes red.

Errors: ``GateProblems`` (the gate's problems; INVALID_ARGUMENT), ``IllegalTransition`` (a
lifecycle rule; FAILED_PRECONDITION), ``RevisionConflict`` (ABORTED), ``StoreUnavailable``
(UNAVAILABLE), ``GateRefused`` (no generated candidate passed; INVALID_ARGUMENT).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experimentation.gate import Gate
from experimentation.generator import Generated, Generator, PlanGenerator, generate_validated
from experimentation.planner import (
    Intent,
    MetricEstimate,
    Plan,
    TrafficEstimate,
    metric_estimate,
    plan,
    traffic_estimates,
)
from serving.experiments import lifecycle
from serving.experiments.config import ExperimentError
from serving.experiments.store import ExperimentStore, Revision, history


class GateProblems(ExperimentError):
    """The change does not pass the gate; ``problems`` lists every problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Audit:
    author: str
    reason: str
    base: int = 0  # 0: the head now


NO_TRAFFIC = TrafficEstimate(0.0, "no traffic observed and none stated")
UNIT_METRIC = MetricEstimate(1.0, 1.0, "stated default (mean 1, sd 1)")


@dataclass(frozen=True)
class Sources:
    """Where the planner and results read observed data, and the defaults when they have none."""

    exposure_paths: Sequence[Path] = ()
    outcome_paths: Sequence[Path] = ()
    traffic_default: TrafficEstimate = NO_TRAFFIC
    metric_default: MetricEstimate = UNIT_METRIC


@dataclass(frozen=True)
class ExperimentView:
    experiment: Mapping[str, Any]
    layer: str
    revision: int


def _layer_key(document: Mapping[str, Any], key: str) -> str:
    return str((lifecycle.layer_of(document, key) or {}).get("key", ""))


class ExperimentControl:
    """Plan, create, validate, start, ramp, stop, read and analyse experiments (module docstring)."""

    def __init__(
        self,
        store: ExperimentStore,
        known_models: Callable[[], Sequence[str]],
        sources: Sources,
        generator: Generator | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        attempts: int = 3,
    ) -> None:
        self.store = store
        self._known_models = known_models
        self._sources = sources
        self._generator = generator or PlanGenerator()
        self._clock = clock
        self._attempts = attempts

    async def _document(self, base: int) -> tuple[int, dict[str, Any]]:
        head = base or await self.store.head()
        return head, (dict((await self.store.get(head)).document) if head else {})

    def _gate(self, document: Mapping[str, Any], traffic: Mapping[str, TrafficEstimate] | None = None) -> Gate:
        """The gate for ``document``, with the observed ``traffic`` (read from the logs when not given)."""
        return Gate(known_models=self._known_models(), traffic=traffic or self._traffic(document))

    def _traffic(self, document: Mapping[str, Any]) -> dict[str, TrafficEstimate]:
        return traffic_estimates(self._sources.exposure_paths, document, self._sources.traffic_default)

    async def plan(self, intent: Intent) -> tuple[Plan, Mapping[str, Any]]:
        """The plan for ``intent`` against the head, and what the generator would write for it."""
        _, document = await self._document(0)
        metric = metric_estimate(self._sources.outcome_paths, intent.primary_metric, self._sources.metric_default)
        proposal = plan(intent, document, metric, self._traffic(document)[intent.surface])
        return proposal, PlanGenerator().generate(proposal, []).experiment

    async def create_from_intent(self, intent: Intent, audit: Audit) -> tuple[Revision, Generated]:
        base, document = await self._document(audit.base)
        metric = metric_estimate(self._sources.outcome_paths, intent.primary_metric, self._sources.metric_default)
        traffic = self._traffic(document)
        proposal = plan(intent, document, metric, traffic[intent.surface])
        gate = self._gate(document, traffic)
        generated = generate_validated(self._generator, proposal, document, gate, self._attempts)
        revision = await self.store.commit(base, generated.document, audit.author, audit.reason)
        return revision, generated

    async def validate(self, definition: Mapping[str, Any], layer: str) -> list[str]:
        _, document = await self._document(0)
        key = str(definition.get("key", ""))
        try:
            changed = lifecycle.create(document, definition, layer or None)
        except lifecycle.IllegalTransition as exc:
            return [str(exc)]
        return self._gate(changed).check(changed, key)

    async def create_definition(self, definition: Mapping[str, Any], layer: str, audit: Audit) -> Revision:
        key = str(definition.get("key", ""))
        return await self._change(audit, key, lambda d: lifecycle.create(d, definition, layer or None), whole=True)

    async def start(self, key: str, audit: Audit) -> Revision:
        return await self._change(audit, key, lambda d: lifecycle.start(d, key, self._clock()), whole=True)

    async def ramp(self, key: str, coverage: float, audit: Audit) -> Revision:
        return await self._change(audit, key, lambda d: lifecycle.ramp(d, key, coverage), whole=False)

    async def stop(self, key: str, audit: Audit) -> Revision:
        return await self._change(audit, key, lambda d: lifecycle.stop(d, key, self._clock()), whole=False)

    async def _change(
        self, audit: Audit, key: str, change: Callable[[dict[str, Any]], dict[str, Any]], *, whole: bool
    ) -> Revision:
        base, document = await self._document(audit.base)
        changed = change(document)
        if whole:
            problems = self._gate(changed).check(changed, key)
        else:  # no power check: no traffic to read
            problems = Gate(self._known_models(), {}).document_problems(changed)
        if problems:
            raise GateProblems(problems)
        return await self.store.commit(base, changed, audit.author, audit.reason)

    async def get(self, key: str) -> ExperimentView:
        head, document = await self._document(0)
        return ExperimentView(lifecycle.find(document, key), _layer_key(document, key), head)

    async def experiments(self) -> tuple[list[ExperimentView], int]:
        """Every experiment of the head, and the head's number."""
        head, document = await self._document(0)
        found = lifecycle.experiments_of(document)
        return [ExperimentView(e, _layer_key(document, str(e.get("key"))), head) for e in found], head

    async def revisions(self, limit: int) -> list[Revision]:
        return await history(self.store, limit)

    async def results(self, key: str) -> tuple[str, str]:
        """``encore experiments analyze`` for experiment ``key`` over the configured logs."""
        from offline.experiments.analysis import AnalysisOptions, analyze
        from offline.experiments.outcome_logs import load_exposures, load_outcomes
        from offline.experiments.report import format_report, report_to_json

        view = await self.get(key)
        if not self._sources.exposure_paths or not self._sources.outcome_paths:
            raise lifecycle.IllegalTransition(
                "logs-configured", "the service was started without exposure/outcome logs"
            )
        exposures = load_exposures(self._sources.exposure_paths, strict=False)
        outcomes = load_outcomes(self._sources.outcome_paths, strict=False)
        weights = {key: {v["key"]: float(v["weight"]) for v in view.experiment.get("variants") or []}}
        report = analyze(exposures, outcomes, AnalysisOptions(expected_weights=weights))
        return format_report(report), json.dumps(report_to_json(report), allow_nan=False)
