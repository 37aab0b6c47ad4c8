"""Experiment definitions: typed, frozen, validated in full before anything runs.

YAML format (``load_experiments``)::

    experiments:
      - key: home-ranker-lite        # required, unique, [a-z0-9-_.]+
        surface: home                # required: home | now_playing
        seed: home-ranker-lite       # optional, defaults to key; unique across experiments
        hash_version: 2              # optional, 1 | 2, default 2
        coverage: 1.0                # required, 0..1
        status: running              # required: draft | running | stopped
        variants:                    # required, >= 2, weights sum to 1 (within 1e-6)
          - key: control             # required, unique within the experiment, [a-z0-9-_.]+
            weight: 0.5              # required, 0..1
            params: {}               # optional, see VariantParams
          - key: lite
            weight: 0.5
            params: {model_version: lgbm-v1-lite, retrieval_size: 200}

An empty file, ``experiments:`` or ``experiments: []`` is a valid empty config. Validation
never stops at the first problem: every problem is reported with its location, e.g.
``experiments.yaml: experiments[1].variants[0].params.retrieval_size: must be an int in
10..5000, got 'abc'``.

Exceptions::

    ExperimentError                 base of every error raised by serving.experiments
    └── ExperimentConfigError       invalid experiment config; .problems lists each problem
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

import yaml

__all__ = [
    "SURFACES",
    "Experiment",
    "ExperimentConfigError",
    "ExperimentError",
    "ExperimentStatus",
    "ExperimentsConfig",
    "Variant",
    "VariantParams",
    "load_experiments",
    "parse_experiments",
]

SURFACES: Final[frozenset[str]] = frozenset({"home", "now_playing"})
"""Surfaces an experiment can run on."""

HASH_VERSIONS: Final[frozenset[int]] = frozenset({1, 2})
WEIGHT_SUM_TOLERANCE: Final[float] = 1e-6

_KEY_RE: Final[re.Pattern[str]] = re.compile(r"[a-z0-9._-]+")
_TOP_KEYS: Final[frozenset[str]] = frozenset({"experiments"})
_EXPERIMENT_KEYS: Final[frozenset[str]] = frozenset(
    {"key", "surface", "seed", "hash_version", "coverage", "status", "variants"}
)
_VARIANT_KEYS: Final[frozenset[str]] = frozenset({"key", "weight", "params"})


class ExperimentError(Exception):
    """Base class of every error raised by ``serving.experiments``."""


class ExperimentConfigError(ExperimentError):
    """The experiment config is invalid; ``problems`` holds one located message per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems: list[str] = list(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in experiment config"
        super().__init__("\n  - ".join([header + ":", *self.problems]))


class ExperimentStatus(enum.StrEnum):
    """Lifecycle of an experiment; only ``RUNNING`` experiments assign units."""

    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class VariantParams:
    """Ranking parameters a variant overrides; ``None`` means "leave the default alone".

    - ``model_version``: ranker bundle version; must be a known model when the loader is
      given ``known_models``.
    - ``retrieval_size``: candidates retrieved, int in 10..5000.
    - ``seed_weight``: Now Playing blend of seed-item vs user signal, float in 0..1.
    - ``diversity_cap``: max items per artist in a response, int in 1..100.
    """

    model_version: str | None = None
    retrieval_size: int | None = None
    seed_weight: float | None = None
    diversity_cap: int | None = None

    def items(self) -> Iterator[tuple[str, object]]:
        """Yield ``(name, value)`` for each parameter that is set, in declaration order."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                yield f.name, value


_STATUSES: Final[frozenset[str]] = frozenset(s.value for s in ExperimentStatus)
PARAM_NAMES: Final[frozenset[str]] = frozenset(f.name for f in fields(VariantParams))


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an experiment: its key, traffic weight and parameter overrides."""

    key: str
    weight: float
    params: VariantParams = VariantParams()


@dataclass(frozen=True, slots=True)
class Experiment:
    """A validated experiment. Invariants: >= 2 variants with unique keys, weights summing to 1."""

    key: str
    surface: str
    seed: str
    hash_version: int
    coverage: float
    status: ExperimentStatus
    variants: tuple[Variant, ...]

    @property
    def weights(self) -> tuple[float, ...]:
        """Variant weights, in variant order."""
        return tuple(v.weight for v in self.variants)

    @property
    def is_running(self) -> bool:
        """Whether the experiment assigns units."""
        return self.status is ExperimentStatus.RUNNING


@dataclass(frozen=True, slots=True)
class ExperimentsConfig:
    """All experiments in file order (the order matters, see ``Assigner``) and their source."""

    experiments: tuple[Experiment, ...] = ()
    source: str = "<memory>"

    def on_surface(self, surface: str) -> tuple[Experiment, ...]:
        """Experiments (of any status) on ``surface``, in file order."""
        return tuple(e for e in self.experiments if e.surface == surface)


def load_experiments(path: Path, known_models: Collection[str] | None = None) -> ExperimentsConfig:
    """Read and validate the YAML experiment config at ``path``.

    Raises ``ExperimentConfigError`` listing every problem, including an unreadable file,
    invalid YAML and duplicate mapping keys (which YAML would otherwise silently collapse).
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentConfigError([f"{source}: cannot read: {exc}"]) from exc
    try:
        data: object = yaml.load(text, Loader=_StrictSafeLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise ExperimentConfigError([f"{source}: invalid YAML: {message}"]) from exc
    return parse_experiments(data, source, known_models)


def parse_experiments(data: object, source: str, known_models: Collection[str] | None = None) -> ExperimentsConfig:
    """Validate already-parsed YAML/JSON data into an ``ExperimentsConfig``.

    ``source`` prefixes every problem message. ``known_models``, when given, is the set of
    allowed ``model_version`` values. Raises ``ExperimentConfigError`` with every problem.
    """
    return _Parser(source, known_models).parse(data)


# --- parsing ----------------------------------------------------------------------------


class _StrictSafeLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys in a mapping instead of keeping the last."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[object, object]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _Parser:
    """Single-use validator; collects problems instead of raising at the first one."""

    def __init__(self, source: str, known_models: Collection[str] | None) -> None:
        self._source = source
        self._known_models = None if known_models is None else frozenset(known_models)
        self._problems: list[str] = []

    def _problem(self, where: str, message: str) -> None:
        self._problems.append(f"{self._source}: {where}: {message}")

    def parse(self, data: object) -> ExperimentsConfig:
        experiments: list[Experiment] = []
        raw_list: list[object] = []
        if isinstance(data, Mapping):
            self._unknown_keys("<root>", data, _TOP_KEYS)
            value = data.get("experiments")
            if isinstance(value, list):
                raw_list = value
            elif value is not None:
                self._problem("experiments", f"must be a list, got {_type_name(value)}")
        elif data is not None:
            self._problem("<root>", f"must be a mapping with key 'experiments', got {_type_name(data)}")

        first_key: dict[str, str] = {}
        first_seed: dict[str, str] = {}
        for i, raw in enumerate(raw_list):
            where = f"experiments[{i}]"
            exp = self._experiment(where, raw)
            if exp is not None:
                experiments.append(exp)
            if not isinstance(raw, Mapping):
                continue
            # Uniqueness is checked on the raw values, so it is reported even when some
            # other field of the same experiment is invalid.
            key, seed = raw.get("key"), raw.get("seed", raw.get("key"))
            if isinstance(key, str):
                self._unique(f"{where}.key", "experiment key", key, first_key)
            if isinstance(seed, str) and seed:
                self._unique(f"{where}.seed", "seed", seed, first_seed)

        if self._problems:
            raise ExperimentConfigError(self._problems)
        return ExperimentsConfig(experiments=tuple(experiments), source=self._source)

    def _unique(self, where: str, what: str, value: str, first_at: dict[str, str]) -> None:
        if value in first_at:
            self._problem(where, f"duplicate {what} {value!r} (first at {first_at[value]})")
        else:
            first_at[value] = where.rsplit(".", 1)[0]

    def _unknown_keys(self, where: str, raw: Mapping[object, object], allowed: frozenset[str]) -> None:
        for key in raw:
            if key not in allowed:
                self._problem(where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    def _required(self, where: str, raw: Mapping[object, object], name: str) -> object:
        if name not in raw:
            self._problem(where, f"missing required key {name!r}")
        return raw.get(name)

    def _key(self, where: str, value: object, what: str) -> str | None:
        if not isinstance(value, str) or not _KEY_RE.fullmatch(value):
            self._problem(where, f"{what} must be a non-empty string of [a-z0-9-_.], got {_show(value)}")
            return None
        return value

    def _fraction(self, where: str, value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            self._problem(where, f"must be a number in 0..1, got {_show(value)}")
            return None
        return float(value)

    def _int_in(self, where: str, value: object, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self._problem(where, f"must be an int in {lo}..{hi}, got {_show(value)}")
            return None
        return value

    def _experiment(self, where: str, raw: object) -> Experiment | None:
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping, got {_type_name(raw)}")
            return None
        before = len(self._problems)
        self._unknown_keys(where, raw, _EXPERIMENT_KEYS)

        key_raw = self._required(where, raw, "key")
        key = self._key(f"{where}.key", key_raw, "key") if "key" in raw else None

        surface: str | None = None
        surface_raw = self._required(where, raw, "surface")
        if "surface" in raw:
            if isinstance(surface_raw, str) and surface_raw in SURFACES:
                surface = surface_raw
            else:
                allowed = ", ".join(sorted(SURFACES))
                self._problem(f"{where}.surface", f"unknown surface {_show(surface_raw)} (allowed: {allowed})")

        seed = key
        if "seed" in raw:
            seed_raw = raw["seed"]
            if isinstance(seed_raw, str) and seed_raw:
                seed = seed_raw
            else:
                seed = None
                self._problem(f"{where}.seed", f"must be a non-empty string, got {_show(seed_raw)}")

        hash_version: int | None = 2
        if "hash_version" in raw:
            hv = raw["hash_version"]
            if isinstance(hv, bool) or not isinstance(hv, int) or hv not in HASH_VERSIONS:
                hash_version = None
                self._problem(f"{where}.hash_version", f"must be 1 or 2, got {_show(hv)}")
            else:
                hash_version = hv

        coverage_raw = self._required(where, raw, "coverage")
        coverage = self._fraction(f"{where}.coverage", coverage_raw) if "coverage" in raw else None

        status: ExperimentStatus | None = None
        status_raw = self._required(where, raw, "status")
        if "status" in raw:
            if isinstance(status_raw, str) and status_raw in _STATUSES:
                status = ExperimentStatus(status_raw)
            else:
                allowed = ", ".join(s.value for s in ExperimentStatus)
                self._problem(f"{where}.status", f"must be one of {allowed}, got {_show(status_raw)}")

        variants = self._variants(f"{where}.variants", self._required(where, raw, "variants"), "variants" in raw)

        if len(self._problems) > before:
            return None
        assert key is not None and surface is not None and seed is not None
        assert hash_version is not None and coverage is not None and status is not None
        assert variants is not None
        return Experiment(key, surface, seed, hash_version, coverage, status, variants)

    def _variants(self, where: str, raw: object, present: bool) -> tuple[Variant, ...] | None:
        if not present:
            return None
        if not isinstance(raw, list):
            self._problem(where, f"must be a list of at least 2 variants, got {_type_name(raw)}")
            return None
        before = len(self._problems)
        if len(raw) < 2:
            self._problem(where, f"needs at least 2 variants, got {len(raw)}")
        variants: list[Variant] = []
        first_key: dict[str, str] = {}
        for j, raw_variant in enumerate(raw):
            vwhere = f"{where}[{j}]"
            variant = self._variant(vwhere, raw_variant)
            if variant is not None:
                variants.append(variant)
            if isinstance(raw_variant, Mapping) and isinstance(raw_variant.get("key"), str):
                self._unique(f"{vwhere}.key", "variant key", raw_variant["key"], first_key)
        if variants and len(variants) == len(raw):  # every weight is individually valid
            total = math.fsum(v.weight for v in variants)
            if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
                self._problem(where, f"weights must sum to 1, got {total:.6g}")
        return tuple(variants) if len(self._problems) == before else None

    def _variant(self, where: str, raw: object) -> Variant | None:
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping, got {_type_name(raw)}")
            return None
        before = len(self._problems)
        self._unknown_keys(where, raw, _VARIANT_KEYS)
        key_raw = self._required(where, raw, "key")
        key = self._key(f"{where}.key", key_raw, "key") if "key" in raw else None
        weight_raw = self._required(where, raw, "weight")
        weight = self._fraction(f"{where}.weight", weight_raw) if "weight" in raw else None
        params = self._params(f"{where}.params", raw.get("params"))
        if len(self._problems) > before:
            return None
        assert key is not None and weight is not None and params is not None
        return Variant(key, weight, params)

    def _params(self, where: str, raw: object) -> VariantParams | None:
        if raw is None:
            return VariantParams()
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping, got {_type_name(raw)}")
            return None
        before = len(self._problems)
        model_version: str | None = None
        retrieval_size: int | None = None
        seed_weight: float | None = None
        diversity_cap: int | None = None
        for name, value in raw.items():
            pwhere = f"{where}.{name}"
            if name == "model_version":
                model_version = self._model_version(pwhere, value)
            elif name == "retrieval_size":
                retrieval_size = self._int_in(pwhere, value, 10, 5000)
            elif name == "seed_weight":
                seed_weight = self._fraction(pwhere, value)
            elif name == "diversity_cap":
                diversity_cap = self._int_in(pwhere, value, 1, 100)
            else:
                allowed = ", ".join(sorted(PARAM_NAMES))
                self._problem(where, f"unknown param {name!r} (allowed: {allowed})")
        if len(self._problems) > before:
            return None
        return VariantParams(model_version, retrieval_size, seed_weight, diversity_cap)

    def _model_version(self, where: str, value: object) -> str | None:
        if not isinstance(value, str) or not value:
            self._problem(where, f"must be a non-empty string, got {_show(value)}")
            return None
        if self._known_models is not None and value not in self._known_models:
            known = ", ".join(sorted(self._known_models)) or "none"
            self._problem(where, f"unknown model version {value!r} (known: {known})")
            return None
        return value
