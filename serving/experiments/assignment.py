"""Deterministic assignment of users to experiment variants, GrowthBook-compatible.

For each running experiment on the requested surface, in config order::

    n = gb_hash(seed, user_id, hash_version)        # None for an unknown version: skipped
    i = choose_variation(n, get_bucket_ranges(len(variants), coverage, weights))
    i == -1  -> the user is not in the experiment (outside coverage): no assignment
    else     -> Assignment(experiment.key, variants[i].key), and variants[i].params apply

Param precedence: **the first experiment wins.** When two running experiments on a surface
both set a param for a user, the value from the experiment that comes first in the config
file is applied; the later experiment still records its assignment (the user is bucketed
there) but cannot override the param. Such overlaps are computed once at construction and
exposed as ``Assigner.conflicts`` so startup can log them; layers (mutual exclusion) are the
long-term fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from serving.experiments.config import SURFACES, Experiment, ExperimentsConfig
from serving.experiments.hashing import BucketRange, choose_variation, gb_hash, get_bucket_ranges

__all__ = ["EMPTY_RESULT", "Assigner", "Assignment", "AssignmentResult", "ParamConflict"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """The user is in ``experiment`` and sees ``variant`` (both config keys)."""

    experiment: str
    variant: str


@dataclass(frozen=True, slots=True)
class AssignmentResult:
    """Assignments in config order and the merged, read-only param overrides they imply."""

    assignments: tuple[Assignment, ...]
    overrides: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class ParamConflict:
    """Running experiments ``winner`` and ``shadowed`` (later) can both set ``param``."""

    surface: str
    param: str
    winner: str
    shadowed: str


_EMPTY_OVERRIDES: Final[Mapping[str, object]] = MappingProxyType({})
EMPTY_RESULT: Final[AssignmentResult] = AssignmentResult((), _EMPTY_OVERRIDES)


@dataclass(frozen=True, slots=True)
class _CompiledExperiment:
    seed: str
    hash_version: int
    ranges: tuple[BucketRange, ...]
    # Per variant, built once: the Assignment to return and the params as (name, value) pairs.
    assignments: tuple[Assignment, ...]
    params: tuple[tuple[tuple[str, object], ...], ...]


def _compile(exp: Experiment) -> _CompiledExperiment:
    ranges = get_bucket_ranges(len(exp.variants), exp.coverage, list(exp.weights))
    return _CompiledExperiment(
        seed=exp.seed,
        hash_version=exp.hash_version,
        ranges=tuple(ranges),
        assignments=tuple(Assignment(exp.key, v.key) for v in exp.variants),
        params=tuple(tuple(v.params.items()) for v in exp.variants),
    )


def _conflicts(surface: str, experiments: tuple[Experiment, ...]) -> list[ParamConflict]:
    owner: dict[str, str] = {}
    found: list[ParamConflict] = []
    for exp in experiments:
        names = {name for v in exp.variants for name, _ in v.params.items()}
        for name in sorted(names):
            if name in owner:
                found.append(ParamConflict(surface, name, owner[name], exp.key))
            else:
                owner[name] = exp.key
    return found


class Assigner:
    """Assigns users to the running experiments of a config; immutable and thread-safe.

    Everything that does not depend on the user (running experiments per surface, bucket
    ranges, Assignment objects, param pairs) is built once here.
    """

    __slots__ = ("_by_surface", "conflicts")

    def __init__(self, config: ExperimentsConfig) -> None:
        by_surface: dict[str, tuple[_CompiledExperiment, ...]] = {}
        conflicts: list[ParamConflict] = []
        for surface in sorted(SURFACES):
            running = tuple(e for e in config.on_surface(surface) if e.is_running)
            by_surface[surface] = tuple(_compile(e) for e in running)
            conflicts.extend(_conflicts(surface, running))
        self._by_surface: Mapping[str, tuple[_CompiledExperiment, ...]] = MappingProxyType(by_surface)
        self.conflicts: tuple[ParamConflict, ...] = tuple(conflicts)
        """Params that more than one running experiment on a surface can set."""

    def assign(self, user_id: str, surface: str) -> AssignmentResult:
        """Return the user's assignments on ``surface`` and the param overrides they imply.

        A pure function of (config, user_id, surface). An empty ``user_id`` is in no
        experiment (as in GrowthBook). Overrides: first experiment in config order wins.
        Raises ``ValueError`` for an unknown surface (a programming error).
        """
        try:
            compiled = self._by_surface[surface]
        except KeyError:
            raise ValueError(f"unknown surface {surface!r} (known: {', '.join(sorted(SURFACES))})") from None
        if not compiled or not user_id:
            return EMPTY_RESULT
        assignments: list[Assignment] = []
        overrides: dict[str, object] = {}
        for exp in compiled:
            n = gb_hash(exp.seed, user_id, exp.hash_version)
            if n is None:
                continue
            i = choose_variation(n, exp.ranges)
            if i < 0:
                continue
            assignments.append(exp.assignments[i])
            for name, value in exp.params[i]:
                overrides.setdefault(name, value)
        if not assignments:
            return EMPTY_RESULT
        return AssignmentResult(tuple(assignments), MappingProxyType(overrides) if overrides else _EMPTY_OVERRIDES)
