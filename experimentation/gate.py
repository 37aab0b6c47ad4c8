"""The gate: nothing reaches the experiments store without passing it.

``Gate.check(document, key)`` returns every problem of the document the change would commit, and
of experiment ``key`` in it, against the live system; empty means it may be committed:

- everything the experiments file validation checks (``serving.experiments.config``): types,
  weights summing to 1, overlapping namespace ranges, hash seeds unique across the document (so
  two experiments never share a randomisation), param names — and every model version against
  the models of the bundle the servers run (``known_models``);
- the experiment declares what it is judged on: ``metrics.primary`` and at least one guardrail;
- it is powered: its namespace range and coverage reach ``metrics.users_per_arm`` per arm within
  ``metrics.max_days`` at the observed traffic (``traffic``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from experimentation.planner import TrafficEstimate
from serving.experiments.config import ExperimentConfigError, parse_experiments
from serving.experiments.lifecycle import IllegalTransition, experiments_of, find, layer_of, replacement_problems


@dataclass(frozen=True)
class Gate:
    """The live facts a change is checked against."""

    known_models: Collection[str] | None  # None: model versions not checked
    traffic: Mapping[str, TrafficEstimate]  # by surface

    def document_problems(self, document: Mapping[str, Any]) -> list[str]:
        """The experiments file validation of ``document`` (model versions against ``known_models``)."""
        known = None if self.known_models is None else frozenset(self.known_models)
        try:
            parse_experiments(document, "change", known)
        except ExperimentConfigError as exc:
            return list(exc.problems)
        return []

    def check_import(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
        """A whole document replacing ``before`` (``encore experiments import``): the document checks,
        the lifecycle rules for every experiment ``before`` had (a started one keeps its variants,
        weights, seed, surface and range; a stopped one stays stopped), and every experiment that is
        new or changed and not stopped must be judged on metrics and powered."""
        problems = self.document_problems(after)
        old = {str(e.get("key")): e for e in experiments_of(before)}
        for experiment in experiments_of(after):
            key = str(experiment.get("key"))
            if key in old:
                problems.extend(str(broken) for broken in replacement_problems(key, old[key], experiment))
            if experiment.get("status") == "stopped" or old.get(key) == experiment:
                continue
            problems.extend(self._judged_on(key, experiment))
            problems.extend(self._powered(key, experiment, after))
        return problems

    def check(self, document: Mapping[str, Any], key: str) -> list[str]:
        problems = self.document_problems(document)
        try:
            experiment = find(document, key)
        except IllegalTransition as exc:
            return [*problems, str(exc)]
        problems.extend(self._judged_on(key, experiment))
        problems.extend(self._powered(key, experiment, document))
        return problems

    def _judged_on(self, key: str, experiment: Mapping[str, Any]) -> list[str]:
        metrics = experiment.get("metrics")
        if not isinstance(metrics, Mapping):
            return [f"{key}: metrics: required (primary metric, guardrails, mde, users_per_arm, max_days)"]
        found = []
        if not metrics.get("primary"):
            found.append(f"{key}: metrics.primary: required (the metric the decision is made on)")
        if not metrics.get("guardrails"):
            found.append(f"{key}: metrics.guardrails: at least one guardrail metric (what must not get worse)")
        return found

    def _powered(self, key: str, experiment: Mapping[str, Any], document: Mapping[str, Any]) -> list[str]:
        metrics = experiment.get("metrics") or {}
        per_arm, max_days = metrics.get("users_per_arm"), metrics.get("max_days")
        if not isinstance(per_arm, int | float) or not isinstance(max_days, int | float):
            return [f"{key}: metrics.users_per_arm and metrics.max_days: required to check power (use the planner)"]
        layer = layer_of(document, key) or {}
        traffic = self.traffic.get(str(experiment.get("surface") or layer.get("surface", "")))
        if traffic is None or traffic.users_per_day <= 0:
            return [f"{key}: no traffic estimate for its surface: cannot check power"]
        rng = experiment.get("range") or (0.0, 1.0)
        share = (float(rng[1]) - float(rng[0])) * float(experiment.get("coverage", 0.0))
        arms = len(experiment.get("variants") or [])
        reach = traffic.users_per_day * float(max_days) * share / max(arms, 1)
        if reach < float(per_arm):
            return [
                f"{key}: underpowered: its {share:.0%} of {traffic.users_per_day:,.0f} users a day reaches "
                f"{reach:,.0f} users per arm in {max_days:g} days, {per_arm:,.0f} are needed"
            ]
        return []
