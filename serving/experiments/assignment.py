"""Deterministic assignment of users to experiment variants, GrowthBook-compatible.

``Assignment(experiment, variant, exposed)`` is ``ranking.types.Assignment`` (re-exported):
``exposed`` is True when the user is in the experiment by hashing (log an exposure) and
False when forced by an allowlist override (never logged as an exposure).

``Assigner(config).assign(user_id, surface)`` walks the surface's *slots* in a fixed order:
every layer on the surface (file order), then every independent experiment (file order).
For a user, in this order of rules:

1. **Allowlist overrides.** A user listed in an experiment's ``overrides`` gets that variant
   and its params in the experiment's slot, with ``Assignment.exposed=False``: forced users
   (QA, demo accounts) are not a random sample and must not be logged as exposures. Overrides
   apply while the experiment is ``draft`` or ``running`` and before its ``stop`` (``start``
   is ignored, so QA can try an experiment before launch); a ``stopped`` experiment forces
   no one. Overrides win over the holdout and over the layer's hashing: a forced user is in
   no other experiment of that layer.
2. **Global holdout.** When the config has a holdout with coverage > 0, every user gets one
   assignment to it, first in the result, with ``exposed=True``:
   ``Assignment(holdout.key, "holdout")`` when ``gb_hash(holdout.seed, user, 2) <
   holdout.coverage`` and ``Assignment(holdout.key, "general")`` otherwise, so the analysis
   compares two logged groups exactly like two arms. A held-out user gets no hashed
   experiment on any surface and no params (forced ones aside).
3. **Layers.** One namespace hash per layer, ``namespace_hash(layer.key, user)``
   (GrowthBook's ``inNamespace``); the experiment whose ``[start, end)`` range contains it is
   the only candidate in the layer. It applies when active (``running`` and ``start <= now <
   stop`` at ``clock()``); a range owned by an inactive experiment stays reserved (its users
   get nothing from the layer).
4. **Bucketing** of an active experiment, as GrowthBook's ``run``::

       n = gb_hash(seed, user_id, hash_version)
       i = choose_variation(n, get_bucket_ranges(len(variants), coverage, weights))
       i == -1 -> not in the experiment (outside coverage); else Assignment(key, variants[i].key)

Param precedence: **the first slot wins.** When two slots set a param for a user, the value
from the earlier slot is applied; the later experiment still records its assignment but
cannot override the param. Such overlaps between running experiments are computed once at
construction as ``Assigner.conflicts`` so startup can log them. Experiments of one layer
never conflict: they are mutually exclusive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from ranking.types import Assignment, Surface  # Assignment re-exported: the pipeline's Query carries assignments
from serving.experiments.config import Experiment, ExperimentsConfig, ExperimentStatus
from serving.experiments.hashing import BucketRange, fnv1a32, get_bucket_ranges

__all__ = [
    "EMPTY_RESULT",
    "GENERAL_VARIANT",
    "HOLDOUT_VARIANT",
    "Assigner",
    "Assignment",
    "AssignmentResult",
    "ParamConflict",
    "utc_now",
]

HOLDOUT_VARIANT: Final[str] = "holdout"
"""Variant of the holdout assignment for held-out users."""
GENERAL_VARIANT: Final[str] = "general"
"""Variant of the holdout assignment for everyone else."""


@dataclass(frozen=True, slots=True)
class AssignmentResult:
    """Assignments in slot order (holdout first) and the merged, read-only param overrides."""

    assignments: tuple[Assignment, ...]
    overrides: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class ParamConflict:
    """Running experiments ``winner`` and ``shadowed`` (a later slot) can both set ``param``."""

    surface: Surface
    param: str
    winner: str
    shadowed: str


def utc_now() -> dt.datetime:
    """The default clock: the current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


_EMPTY_OVERRIDES: Final[Mapping[str, object]] = MappingProxyType({})
EMPTY_RESULT: Final[AssignmentResult] = AssignmentResult((), _EMPTY_OVERRIDES)

_Params = tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A running experiment with everything that does not depend on the user built once."""

    seed_state: int  # fnv1a32(seed): v2 hashes fnv(seed + id) continue from it
    seed: str  # v1 hashes fnv(id + seed) end with it
    hash_version: int
    ranges: tuple[BucketRange, ...]
    assignments: tuple[Assignment, ...]  # per variant, exposed=True
    params: tuple[_Params, ...]  # per variant, (name, value) pairs
    start: dt.datetime | None
    stop: dt.datetime | None
    ns_start: float  # the layer range; [0, 1) for an independent experiment
    ns_end: float


@dataclass(frozen=True, slots=True)
class _Forced:
    assignment: Assignment  # exposed=False
    params: _Params
    stop: dt.datetime | None


@dataclass(frozen=True, slots=True)
class _Slot:
    namespace: str | None  # "__" + the layer key (the namespace hash seed); None when independent
    experiments: tuple[_Compiled, ...]  # running ones; at most one when independent


@dataclass(frozen=True, slots=True)
class _Plan:
    """What ``assign`` needs for one surface."""

    slots: tuple[_Slot, ...]
    forced: Mapping[str, Mapping[int, _Forced]]  # user id -> slot index -> forced variant
    timed: bool  # whether any start/stop bound exists, i.e. whether to read the clock
    needs_user_state: bool  # whether any v1 hash (a layer, a hash_version 1 experiment) is needed


def _compile(exp: Experiment) -> _Compiled:
    ns_start, ns_end = exp.range if exp.range is not None else (0.0, 1.0)
    return _Compiled(
        seed_state=fnv1a32(exp.seed),
        seed=exp.seed,
        hash_version=exp.hash_version,
        ranges=tuple(get_bucket_ranges(len(exp.variants), exp.coverage, list(exp.weights))),
        assignments=tuple(Assignment(exp.key, v.key) for v in exp.variants),
        params=tuple(tuple(v.params.items()) for v in exp.variants),
        start=exp.start,
        stop=exp.stop,
        ns_start=ns_start,
        ns_end=ns_end,
    )


def _plan(surface: Surface, config: ExperimentsConfig) -> tuple[_Plan, list[ParamConflict]]:
    groups: list[tuple[str | None, tuple[Experiment, ...]]] = [
        (layer.key, layer.experiments) for layer in config.layers_on(surface)
    ]
    groups.extend((None, (e,)) for e in config.on_surface(surface))

    slots: list[_Slot] = []
    forced: dict[str, dict[int, _Forced]] = {}
    timed = False
    for namespace, experiments in groups:
        running = tuple(e for e in experiments if e.is_running)
        forcing = tuple(e for e in experiments if e.overrides and e.status is not ExperimentStatus.STOPPED)
        if not running and not forcing:
            continue
        index = len(slots)
        seed = None if namespace is None else "__" + namespace
        slots.append(_Slot(seed, tuple(_compile(e) for e in running)))
        timed = timed or any(e.start is not None or e.stop is not None for e in running)
        for exp in forcing:
            timed = timed or exp.stop is not None
            by_key = {v.key: v for v in exp.variants}
            for user, variant_key in exp.overrides.items():
                variant = by_key[variant_key]
                assignment = Assignment(exp.key, variant.key, exposed=False)
                forced.setdefault(user, {})[index] = _Forced(assignment, tuple(variant.params.items()), exp.stop)

    conflicts: list[ParamConflict] = []
    owner: dict[str, tuple[int, str]] = {}  # param -> (slot index, experiment key)
    for index, (_, experiments) in enumerate(groups):
        for exp in (e for e in experiments if e.is_running):
            for name in sorted({name for v in exp.variants for name, _ in v.params.items()}):
                first = owner.setdefault(name, (index, exp.key))
                if first[0] != index:
                    conflicts.append(ParamConflict(surface, name, first[1], exp.key))

    frozen_forced = MappingProxyType({user: MappingProxyType(by_slot) for user, by_slot in forced.items()})
    needs_user_state = any(s.namespace is not None or any(e.hash_version == 1 for e in s.experiments) for s in slots)
    return _Plan(tuple(slots), frozen_forced, timed, needs_user_state), conflicts


class Assigner:
    """Assigns users to the experiments of a config (rules in the module docstring).

    Immutable and thread-safe. Everything that does not depend on the user (slots, bucket
    ranges, Assignment objects, param pairs, the allowlist) is built once here. ``clock``
    must return a timezone-aware datetime; it is read at most once per ``assign`` and only
    when some experiment on the surface has a start or stop.
    """

    __slots__ = ("_clock", "_general", "_held", "_holdout", "_plans", "conflicts")

    def __init__(self, config: ExperimentsConfig, clock: Callable[[], dt.datetime] = utc_now) -> None:
        plans: dict[Surface, _Plan] = {}
        conflicts: list[ParamConflict] = []
        for surface in Surface:
            plans[surface], found = _plan(surface, config)
            conflicts.extend(found)
        self._plans: Mapping[Surface, _Plan] = MappingProxyType(plans)
        self._clock = clock
        holdout = config.holdout
        self._holdout: tuple[int, float] | None = None  # (fnv1a32(seed), coverage)
        self._held = self._general = Assignment("", "")
        if holdout is not None and holdout.coverage > 0:
            self._holdout = (fnv1a32(holdout.seed), holdout.coverage)
            self._held = Assignment(holdout.key, HOLDOUT_VARIANT)
            self._general = Assignment(holdout.key, GENERAL_VARIANT)
        self.conflicts: tuple[ParamConflict, ...] = tuple(conflicts)
        """Params that running experiments in different slots of a surface can both set."""

    def assign(self, user_id: str, surface: Surface) -> AssignmentResult:
        """Return the user's assignments on ``surface`` and the param overrides they imply.

        A pure function of (config, user_id, surface, clock()). An empty ``user_id`` is in
        no experiment (as in GrowthBook). Returns ``EMPTY_RESULT`` when there is no
        assignment. Raises ``ValueError`` for an unknown surface (a programming error).
        """
        try:
            plan = self._plans[surface]
        except KeyError:
            known = ", ".join(sorted(s.value for s in Surface))
            raise ValueError(f"unknown surface {surface!r} (known: {known})") from None
        if not user_id:
            return EMPTY_RESULT
        # Hashes are gb_hash / namespace_hash with FNV states precomputed: v2 hashes
        # fnv(seed + id) continue from fnv(seed); v1 hashes fnv(id + seed) continue from fnv(id).
        assignments: list[Assignment] = []
        held = False
        if self._holdout is not None:
            seed_state, coverage = self._holdout
            held = (fnv1a32(str(fnv1a32(user_id, seed_state))) % 10000) / 10000 < coverage
            assignments.append(self._held if held else self._general)
        forced = plan.forced.get(user_id) if plan.forced else None
        if not plan.slots or (held and forced is None):
            return AssignmentResult(tuple(assignments), _EMPTY_OVERRIDES) if assignments else EMPTY_RESULT

        now = self._clock() if plan.timed else None
        user_state = fnv1a32(user_id) if plan.needs_user_state else 0
        overrides: dict[str, object] = {}
        for index, slot in enumerate(plan.slots):
            if forced is not None:
                entry = forced.get(index)
                if entry is not None and (entry.stop is None or now is None or now < entry.stop):
                    assignments.append(entry.assignment)
                    for name, value in entry.params:
                        overrides.setdefault(name, value)
                    continue
            if held:
                continue
            # An independent experiment owns all of [0, 1); a layer's namespace hash picks one range.
            position = 0.0 if slot.namespace is None else (fnv1a32(slot.namespace, user_state) % 1000) / 1000
            for exp in slot.experiments:
                if exp.ns_start <= position < exp.ns_end:
                    break
            else:
                continue
            if now is not None and (
                (exp.start is not None and now < exp.start) or (exp.stop is not None and now >= exp.stop)
            ):
                continue
            if exp.hash_version == 2:
                n = (fnv1a32(str(fnv1a32(user_id, exp.seed_state))) % 10000) / 10000
            else:
                n = (fnv1a32(exp.seed, user_state) % 1000) / 1000
            for i, (lo, hi) in enumerate(exp.ranges):  # choose_variation, inlined
                if lo <= n < hi:
                    assignments.append(exp.assignments[i])
                    for name, value in exp.params[i]:
                        overrides.setdefault(name, value)
                    break
        if not assignments:
            return EMPTY_RESULT
        return AssignmentResult(tuple(assignments), MappingProxyType(overrides) if overrides else _EMPTY_OVERRIDES)
