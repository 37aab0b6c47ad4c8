"""An experiment's life: draft → running → stopped, as pure changes to an experiments document.

Every function takes a document (the JSON form the store keeps, ``serving.experiments.store``)
and returns a new one; the input is never mutated. A change the rules forbid raises
``IllegalTransition`` naming the rule (the API answers FAILED_PRECONDITION with it):

- ``draft-only-start``: only a draft starts.
- ``running-only-stop``: only a running experiment stops.
- ``no-ramp-after-stop``: a stopped experiment is never ramped (restarting it would re-expose
  users who were told it ended; create a new experiment).
- ``frozen-once-started``: variants, weights, params, seed, hash version, surface and namespace
  range are fixed once an experiment has started: changing them would move users between arms
  mid-experiment and mix two treatments in one arm. Coverage may change (ramping never moves an
  already-assigned user: a variant's hash range only grows or shrinks from its own start).
- ``unique-key``: a new experiment's key is not in use (stopped ones included).
- ``known-key``: the experiment exists.

Validation of the resulting document (weights sum to 1, ranges free, models exist, …) is the
gate's job (``serving.experiments.gate``); these functions check only the transitions.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from serving.experiments.config import ExperimentError

#: Fields of a started experiment that no change may touch (``frozen-once-started``).
FROZEN_FIELDS = ("variants", "seed", "hash_version", "surface", "range")


class IllegalTransition(ExperimentError):
    """A change the lifecycle forbids; ``rule`` names the rule."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


Document = dict[str, Any]


def experiments_of(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every experiment mapping in ``document``: independent ones, then each layer's."""
    yield from document.get("experiments") or []
    for layer in document.get("layers") or []:
        yield from layer.get("experiments") or []


def find(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The experiment ``key`` in ``document`` (``known-key`` when absent)."""
    for experiment in experiments_of(document):
        if experiment.get("key") == key:
            return experiment
    raise IllegalTransition("known-key", f"no experiment {key!r}")


def status_of(experiment: Mapping[str, Any]) -> str:
    return str(experiment.get("status", "draft"))


def layer_of(document: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """The layer holding experiment ``key``; None for an independent (or unknown) experiment."""
    for layer in document.get("layers") or []:
        if any(e.get("key") == key for e in layer.get("experiments") or []):
            return dict(layer)
    return None


def replacement_problems(key: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[IllegalTransition]:
    """The rules that replacing experiment ``key``'s ``before`` by ``after`` breaks (empty: none)."""
    was, now = status_of(before), status_of(after)
    found = []
    if was != "draft":
        touched = sorted(f for f in FROZEN_FIELDS if before.get(f) != after.get(f))
        if touched:
            found.append(
                IllegalTransition(
                    "frozen-once-started",
                    f"{key!r} is {was}: {', '.join(touched)} cannot change (it would move users between arms); "
                    "stop it and create a new experiment",
                )
            )
    if was == "stopped" and now != "stopped":
        found.append(IllegalTransition("no-ramp-after-stop", f"{key!r} is stopped; create a new experiment instead"))
    if was == "running" and now == "draft":
        found.append(IllegalTransition("draft-only-start", f"{key!r} is running; it can only be stopped"))
    return found


def create(document: Mapping[str, Any], experiment: Mapping[str, Any], layer: str | None = None) -> Document:
    """Add ``experiment`` as a draft (to ``layer`` when given, created if new)."""
    key = experiment.get("key")
    if any(e.get("key") == key for e in experiments_of(document)):
        raise IllegalTransition("unique-key", f"an experiment {key!r} exists already; choose a new key")
    new = copy.deepcopy(dict(document))
    draft = {**copy.deepcopy(dict(experiment)), "status": "draft"}
    if layer is None:
        new.setdefault("experiments", []).append(draft)
        return new
    layers = new.setdefault("layers", [])
    target = next((entry for entry in layers if entry.get("key") == layer), None)
    if target is None:
        target = {"key": layer, "surface": draft.get("surface"), "experiments": []}
        layers.append(target)
    target.setdefault("experiments", []).append(draft)
    return new


def update(document: Mapping[str, Any], key: str, changes: Mapping[str, Any]) -> Document:
    """Change fields of experiment ``key``; frozen fields only while it is a draft."""
    new = copy.deepcopy(dict(document))
    experiment = find(new, key)
    if "key" in changes and changes["key"] != key:
        raise IllegalTransition("frozen-once-started", "an experiment's key never changes")
    if "status" in changes:
        raise IllegalTransition("draft-only-start", "status changes only through start and stop")
    broken = replacement_problems(key, experiment, {**experiment, **changes})
    if broken:
        raise broken[0]
    experiment.update(copy.deepcopy(dict(changes)))
    return new


def start(document: Mapping[str, Any], key: str, now: dt.datetime) -> Document:
    """draft → running; ``start`` defaults to ``now``."""
    new = copy.deepcopy(dict(document))
    experiment = find(new, key)
    if status_of(experiment) != "draft":
        raise IllegalTransition("draft-only-start", f"{key!r} is {status_of(experiment)}, not a draft")
    experiment["status"] = "running"
    experiment.setdefault("start", now.isoformat())
    return new


def ramp(document: Mapping[str, Any], key: str, coverage: float) -> Document:
    """Set the coverage of a draft or running experiment (0..1)."""
    new = copy.deepcopy(dict(document))
    experiment = find(new, key)
    if status_of(experiment) == "stopped":
        raise IllegalTransition("no-ramp-after-stop", f"{key!r} is stopped; create a new experiment instead")
    if not 0.0 <= coverage <= 1.0:
        raise IllegalTransition("coverage-in-0-1", f"coverage must be in 0..1, got {coverage}")
    experiment["coverage"] = coverage
    return new


def stop(document: Mapping[str, Any], key: str, now: dt.datetime) -> Document:
    """running → stopped; ``stop`` is set to ``now`` (just after ``start`` if that is not later)
    unless an earlier stop was planned."""
    new = copy.deepcopy(dict(document))
    experiment = find(new, key)
    if status_of(experiment) != "running":
        raise IllegalTransition("running-only-stop", f"{key!r} is {status_of(experiment)}, not running")
    experiment["status"] = "stopped"
    planned = experiment.get("stop")
    if planned is None or dt.datetime.fromisoformat(str(planned)) > now:
        started = experiment.get("start")
        earliest = dt.datetime.fromisoformat(str(started)) + dt.timedelta(microseconds=1) if started else now
        experiment["stop"] = max(now, earliest).isoformat()  # stop is after start, even in the same instant
    return new
