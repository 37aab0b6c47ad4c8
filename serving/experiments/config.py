"""Experiment definitions: typed, frozen, validated in full before anything runs.

YAML format (``load_experiments``); every top-level key is optional::

    holdout:                          # global holdout: its users get no experiment on any surface
      key: global-holdout             # optional, default "global-holdout"; an experiment key
      seed: global-holdout            # optional, defaults to key; unique among all seeds
      coverage: 0.05                  # required, fraction of users held out, 0..0.5
    layers:                           # mutually exclusive experiments, one namespace per layer
      - key: home-ranking             # required, unique among layers, [a-z0-9-_.]+; the
        surface: home                 #   GrowthBook namespace id (hash seed "__" + key)
        experiments:                  # required list; ranges in a layer must not overlap
          - key: home-ranker-lite     # as a top-level experiment, plus:
            range: [0.0, 0.5]         # required, the namespace range [start, end) within 0..1
            # surface: optional here; if given it must equal the layer's
    experiments:                      # independent experiments (no namespace)
      - key: home-ranker-lite         # required, [a-z0-9-_.]+, unique across the whole file
        surface: home                 # required: home | now_playing
        seed: home-ranker-lite        # optional, defaults to key; unique across the whole file
        hash_version: 2               # optional, 1 | 2, default 2
        coverage: 1.0                 # required, 0..1
        status: running               # required: draft | running | stopped
        start: 2026-11-01T00:00:00Z   # optional ISO-8601 with a timezone (or a YAML date = 00:00 UTC)
        stop: 2026-12-01T00:00:00Z    # optional, after start; active while start <= now < stop
        overrides: {qa-user-1: lite}  # optional allowlist: user id -> variant key
        metrics: {primary: stream, guardrails: [skip], mde: 0.02, users_per_arm: 8000, max_days: 14}
                                      # optional (required by the experimentation service's gate)
        variants:                     # required, >= 2, weights sum to 1 (within 1e-6)
          - key: control              # required, unique within the experiment, [a-z0-9-_.]+
            weight: 0.5               # required, 0..1
            params: {}                # optional, see VariantParams (ranking.types.TUNABLE_PARAMS)
          - key: lite
            weight: 0.5
            params: {model_version: lgbm-v1-lite, retrieval_size: 200}

An empty file or empty lists are a valid empty config. Validation never stops at the first
problem: every problem is reported with its location, e.g. ``experiments.yaml:
layers[0].experiments[1].range: [0.4, 0.8) of 'b' overlaps [0.0, 0.5) of 'a' (at
layers[0].experiments[0])``. Besides types and ranges of every field it checks: duplicate
keys in a YAML mapping, duplicate layer keys, experiment keys and seeds unique across the
file (holdout included), overlapping ranges in a layer, a layer experiment's surface, weights
summing to 1, at least two variants, unknown param names and model versions, override
variants that do not exist, a user forced into two experiments of one layer, stop <= start.

Exceptions::

    ExperimentError                 base of every experiment error caused by bad input
    ├── ExperimentConfigError       invalid experiment config; .problems lists each problem
    └── AnalysisInputError          bad analysis input (offline.experiments.outcome_logs)
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeGuard

import yaml

from common.errors import EncoreError
from ranking.types import TUNABLE_PARAMS, Surface
from serving.experiments.hashing import Namespace

__all__ = [
    "DEFAULT_HOLDOUT_KEY",
    "Experiment",
    "ExperimentConfigError",
    "ExperimentError",
    "ExperimentStatus",
    "ExperimentsConfig",
    "Holdout",
    "Layer",
    "Variant",
    "VariantParams",
    "load_experiments",
    "parse_experiments",
    "validate_file",
]

HASH_VERSIONS: Final[frozenset[int]] = frozenset({1, 2})
WEIGHT_SUM_TOLERANCE: Final[float] = 1e-6
DEFAULT_HOLDOUT_KEY: Final[str] = "global-holdout"
HOLDOUT_MAX_COVERAGE: Final[float] = 0.5

_KEY_RE: Final[re.Pattern[str]] = re.compile(r"[a-z0-9._-]+")
_TOP_KEYS: Final[frozenset[str]] = frozenset({"holdout", "layers", "experiments"})
_HOLDOUT_KEYS: Final[frozenset[str]] = frozenset({"key", "seed", "coverage"})
_LAYER_KEYS: Final[frozenset[str]] = frozenset({"key", "surface", "experiments"})
_EXPERIMENT_KEYS: Final[frozenset[str]] = frozenset(
    {"key", "surface", "seed", "hash_version", "coverage", "status", "start", "stop", "overrides", "variants"}
    | {"metrics"}
)
#: ``metrics:`` of an experiment (what it is judged on; the experimentation service requires it).
_METRICS_KEYS: Final[frozenset[str]] = frozenset({"primary", "guardrails", "mde", "users_per_arm", "max_days"})
_LAYER_EXPERIMENT_KEYS: Final[frozenset[str]] = _EXPERIMENT_KEYS | {"range"}
_VARIANT_KEYS: Final[frozenset[str]] = frozenset({"key", "weight", "params"})
_NO_OVERRIDES: Final[Mapping[str, str]] = MappingProxyType({})


class ExperimentError(EncoreError):
    """Base of the experiment errors bad input causes (config files, analysis logs); bad arguments
    from code (a programming error) raise ``ValueError`` instead."""


class ExperimentConfigError(ExperimentError):
    """The experiment config is invalid; ``problems`` holds one located message per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems: list[str] = list(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in experiment config"
        super().__init__("\n  - ".join([header + ":", *self.problems]))


class ExperimentStatus(enum.StrEnum):
    """Lifecycle of an experiment; only ``RUNNING`` experiments assign units by hashing."""

    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"


class VariantParams:
    """The ranking params a variant overrides: a partial ``ranking.types.RankingParams``.

    Any of ``ranking.types.TUNABLE_PARAMS`` (their valid values are declared there) may be set;
    an unset one reads as ``None``, "leave the surface default alone". Immutable and hashable::

        VariantParams(retrieval_size=200).retrieval_size == 200
        VariantParams(retrieval_size=200).model_version is None

    ``model_version`` and ``shadow_model`` must be models of the bundle when the loader is given
    ``known_models``; ``shadow_model`` is scored in the shadow of the served model, never served.
    """

    __slots__ = ("_values",)
    _values: tuple[tuple[str, object], ...]

    def __init__(self, **values: object) -> None:
        unknown = sorted(name for name in values if name not in TUNABLE_PARAMS)
        if unknown:
            raise TypeError(f"not a tunable ranking param: {', '.join(unknown)}")
        pairs = tuple((name, values[name]) for name in TUNABLE_PARAMS if values.get(name) is not None)
        object.__setattr__(self, "_values", pairs)

    def __getattr__(self, name: str) -> Any:  # called only for names that are not attributes
        if name in TUNABLE_PARAMS:
            return dict(self._values).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return self._values == other._values if isinstance(other, VariantParams) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"VariantParams({', '.join(f'{name}={value!r}' for name, value in self._values)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_variant_params, (dict(self._values),))

    def items(self) -> Iterator[tuple[str, object]]:
        """Yield ``(name, value)`` for each parameter that is set, in ``RankingParams`` order."""
        return iter(self._values)


def _variant_params(values: dict[str, object]) -> VariantParams:
    return VariantParams(**values)


_NO_PARAMS: Final[VariantParams] = VariantParams()


_STATUSES: Final[frozenset[str]] = frozenset(s.value for s in ExperimentStatus)
_SURFACES: Final[frozenset[str]] = frozenset(s.value for s in Surface)


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an experiment: its key, traffic weight and parameter overrides."""

    key: str
    weight: float
    params: VariantParams = _NO_PARAMS


@dataclass(frozen=True, slots=True)
class Experiment:
    """A validated experiment.

    Invariants: >= 2 variants with unique keys and weights summing to 1; ``start < stop``
    when both are set (both timezone-aware); every ``overrides`` value is a variant key;
    ``layer`` and ``range`` are both set (a layered experiment) or both None (independent).
    """

    key: str
    surface: Surface
    seed: str
    hash_version: int
    coverage: float
    status: ExperimentStatus
    variants: tuple[Variant, ...]
    start: dt.datetime | None = None
    stop: dt.datetime | None = None
    overrides: Mapping[str, str] = field(default_factory=lambda: _NO_OVERRIDES)
    """Allowlist: user id -> forced variant key."""
    layer: str | None = None
    range: tuple[float, float] | None = None
    """The ``[start, end)`` range of the layer's namespace this experiment owns."""

    @property
    def weights(self) -> tuple[float, ...]:
        """Variant weights, in variant order."""
        return tuple(v.weight for v in self.variants)

    @property
    def weights_by_variant(self) -> Mapping[str, float]:
        """Expected traffic share of each variant among the experiment's units, by variant key."""
        return MappingProxyType({v.key: v.weight for v in self.variants})

    @property
    def namespace(self) -> Namespace | None:
        """GrowthBook's ``(layer key, start, end)`` for a layered experiment, else None."""
        if self.layer is None or self.range is None:
            return None
        return (self.layer, self.range[0], self.range[1])

    @property
    def is_running(self) -> bool:
        """Whether the status lets the experiment assign units (see also ``is_active``)."""
        return self.status is ExperimentStatus.RUNNING

    def is_active(self, now: dt.datetime) -> bool:
        """Running and ``start <= now < stop`` (a missing bound is open); ``now`` must be aware."""
        return (
            self.status is ExperimentStatus.RUNNING
            and (self.start is None or self.start <= now)
            and (self.stop is None or now < self.stop)
        )


@dataclass(frozen=True, slots=True)
class Layer:
    """Mutually exclusive experiments on one surface: disjoint ranges of namespace ``key``."""

    key: str
    surface: Surface
    experiments: tuple[Experiment, ...] = ()


@dataclass(frozen=True, slots=True)
class Holdout:
    """The global holdout: units with ``gb_hash(seed, unit, 2) < coverage`` get no experiment."""

    coverage: float
    key: str = DEFAULT_HOLDOUT_KEY
    seed: str = DEFAULT_HOLDOUT_KEY


@dataclass(frozen=True, slots=True)
class ExperimentsConfig:
    """A validated config and its source.

    ``experiments`` are the independent (top-level) experiments and ``layers`` the layers,
    both in file order, which sets param precedence (see ``Assigner``).
    """

    experiments: tuple[Experiment, ...] = ()
    source: str = "<memory>"
    layers: tuple[Layer, ...] = ()
    holdout: Holdout | None = None

    @property
    def all_experiments(self) -> tuple[Experiment, ...]:
        """Every experiment: layered ones (layer by layer, in file order), then independent ones."""
        return tuple(e for layer in self.layers for e in layer.experiments) + self.experiments

    def on_surface(self, surface: Surface) -> tuple[Experiment, ...]:
        """Independent experiments (of any status) on ``surface``, in file order."""
        return tuple(e for e in self.experiments if e.surface == surface)

    def layers_on(self, surface: Surface) -> tuple[Layer, ...]:
        """Layers on ``surface``, in file order."""
        return tuple(layer for layer in self.layers if layer.surface == surface)


def load_experiments(path: Path, known_models: Collection[str] | None = None) -> ExperimentsConfig:
    """Read and validate the YAML experiment config at ``path``.

    Raises ``ExperimentConfigError`` listing every problem, including an unreadable file,
    invalid YAML and duplicate mapping keys (which YAML would otherwise silently collapse).
    """
    return parse_experiments(read_experiments_document(path), str(path), known_models)


def read_experiments_document(path: Path) -> object:
    """The YAML document at ``path``, unvalidated (``ExperimentConfigError`` when it cannot be read or
    is not YAML, or repeats a mapping key)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentConfigError([f"{source}: cannot read: {exc}"]) from exc
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise ExperimentConfigError([f"{source}: invalid YAML: {message}"]) from exc


def parse_experiments(data: object, source: str, known_models: Collection[str] | None = None) -> ExperimentsConfig:
    """Validate already-parsed YAML/JSON data into an ``ExperimentsConfig``.

    ``source`` prefixes every problem message. ``known_models``, when given, is the set of
    allowed ``model_version`` and ``shadow_model`` values. ``None`` data is an empty config.
    Never mutates ``data``. Raises ``ExperimentConfigError`` with every problem.
    """
    return _Parser(source, known_models).parse(data)


def validate_file(path: Path, known_models: Collection[str] | None = None) -> list[str]:
    """Return every problem of the config file at ``path``, located; empty when it is valid."""
    try:
        load_experiments(path, known_models)
    except ExperimentConfigError as exc:
        return exc.problems
    return []


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


def _is_number(value: object) -> TypeGuard[int | float]:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _as_range(value: object) -> tuple[float, float] | None:
    """The value as a valid namespace range ``(start, end)``, or None (silently)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    start, end = value
    if not (_is_number(start) and _is_number(end)):
        return None
    if not 0.0 <= start < end <= 1.0:
        return None
    return (float(start), float(end))


def _fmt_range(rng: tuple[float, float]) -> str:
    return f"[{rng[0]:g}, {rng[1]:g})"


class _Parser:
    """Single-use validator; collects problems instead of raising at the first one."""

    def __init__(self, source: str, known_models: Collection[str] | None) -> None:
        self._source = source
        self._known_models = None if known_models is None else frozenset(known_models)
        self._problems: list[str] = []
        # Uniqueness across the whole file: value -> location of its first use.
        self._first_experiment_key: dict[str, str] = {}
        self._first_seed: dict[str, str] = {}

    def _problem(self, where: str, message: str) -> None:
        self._problems.append(f"{self._source}: {where}: {message}")

    def parse(self, data: object) -> ExperimentsConfig:
        holdout: Holdout | None = None
        layers: list[Layer] = []
        experiments: list[Experiment] = []
        if isinstance(data, Mapping):
            self._unknown_keys("<root>", data, _TOP_KEYS)
            if data.get("holdout") is not None:
                holdout = self._holdout("holdout", data["holdout"])
            first_layer: dict[str, str] = {}
            for i, raw in enumerate(self._list("layers", data.get("layers"))):
                layer = self._layer(f"layers[{i}]", raw)
                if layer is not None:
                    layers.append(layer)
                if isinstance(raw, Mapping) and isinstance(raw.get("key"), str):
                    self._unique(f"layers[{i}].key", "layer key", raw["key"], first_layer)
            for i, raw in enumerate(self._list("experiments", data.get("experiments"))):
                exp = self._experiment(f"experiments[{i}]", raw, None)
                if exp is not None:
                    experiments.append(exp)
        elif data is not None:
            self._problem("<root>", f"must be a mapping with key 'experiments', got {_type_name(data)}")

        if self._problems:
            raise ExperimentConfigError(self._problems)
        return ExperimentsConfig(
            experiments=tuple(experiments), source=self._source, layers=tuple(layers), holdout=holdout
        )

    # --- helpers ------------------------------------------------------------------------

    def _list(self, where: str, value: object) -> list[object]:
        if value is None:
            return []
        if not isinstance(value, list):
            self._problem(where, f"must be a list, got {_type_name(value)}")
            return []
        return value

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

    def _fraction(self, where: str, value: object, hi: float = 1.0) -> float | None:
        if not _is_number(value) or not 0.0 <= value <= hi:
            self._problem(where, f"must be a number in 0..{hi:g}, got {_show(value)}")
            return None
        return float(value)

    def _int_in(self, where: str, value: object, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self._problem(where, f"must be an int in {lo}..{hi}, got {_show(value)}")
            return None
        return value

    def _seed(self, where: str, raw: Mapping[object, object], default: str | None) -> str | None:
        if "seed" not in raw:
            return default
        seed = raw["seed"]
        if isinstance(seed, str) and seed:
            return seed
        self._problem(f"{where}.seed", f"must be a non-empty string, got {_show(seed)}")
        return None

    def _metrics(self, where: str, raw: object) -> None:
        """``metrics: {primary, guardrails, mde, users_per_arm, max_days}``: checked, not used in serving."""
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping, got {_type_name(raw)}")
            return
        self._unknown_keys(where, raw, _METRICS_KEYS)
        if "primary" in raw and not (isinstance(raw["primary"], str) and raw["primary"]):
            self._problem(f"{where}.primary", f"must be a metric name, got {_show(raw['primary'])}")
        guardrails = raw.get("guardrails", [])
        if not isinstance(guardrails, list) or not all(isinstance(g, str) and g for g in guardrails):
            self._problem(f"{where}.guardrails", f"must be a list of metric names, got {_show(guardrails)}")
        mde = raw.get("mde")
        if mde is not None and (isinstance(mde, bool) or not isinstance(mde, int | float) or not 0 < mde < 1):
            self._problem(f"{where}.mde", f"must be a relative effect in (0, 1), got {_show(mde)}")
        for name in ("users_per_arm", "max_days"):
            value = raw.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                self._problem(f"{where}.{name}", f"must be a positive number, got {_show(value)}")

    def _timestamp(self, where: str, value: object) -> dt.datetime | None:
        parsed: dt.datetime | None = None
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, dt.date):
            parsed = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        elif isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                parsed = None
        if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
            self._problem(
                where, f"must be an ISO-8601 timestamp with a timezone (e.g. 2026-11-01T00:00:00Z), got {_show(value)}"
            )
            return None
        return parsed

    # --- sections -----------------------------------------------------------------------

    def _holdout(self, where: str, raw: object) -> Holdout | None:
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping, got {_type_name(raw)}")
            return None
        before = len(self._problems)
        self._unknown_keys(where, raw, _HOLDOUT_KEYS)
        key: str | None = DEFAULT_HOLDOUT_KEY
        if "key" in raw:
            key = self._key(f"{where}.key", raw["key"], "key")
        seed = self._seed(where, raw, key)
        coverage_raw = self._required(where, raw, "coverage")
        coverage = None
        if "coverage" in raw:
            coverage = self._fraction(f"{where}.coverage", coverage_raw, HOLDOUT_MAX_COVERAGE)
        # The holdout key is reported as an experiment key; its seed shares the seed space.
        if key is not None:
            self._unique(f"{where}.key", "experiment key", key, self._first_experiment_key)
        if seed is not None:
            self._unique(f"{where}.seed", "seed", seed, self._first_seed)
        if len(self._problems) > before:
            return None
        assert key is not None and seed is not None and coverage is not None
        return Holdout(coverage=coverage, key=key, seed=seed)

    def _layer(self, where: str, raw: object) -> Layer | None:
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping, got {_type_name(raw)}")
            return None
        before = len(self._problems)
        self._unknown_keys(where, raw, _LAYER_KEYS)
        key_raw = self._required(where, raw, "key")
        key = self._key(f"{where}.key", key_raw, "layer key") if "key" in raw else None
        self._required(where, raw, "surface")
        surface = self._surface(where, raw) if "surface" in raw else None
        self._required(where, raw, "experiments")
        raw_experiments = self._list(f"{where}.experiments", raw.get("experiments"))

        experiments: list[Experiment] = []
        claimed: list[tuple[tuple[float, float], str, str]] = []  # (range, experiment key, where)
        forced_at: dict[str, tuple[str, str]] = {}  # user id -> (experiment key, where)
        for j, raw_exp in enumerate(raw_experiments):
            ewhere = f"{where}.experiments[{j}]"
            exp = self._experiment(ewhere, raw_exp, (key, surface))
            if exp is not None:
                experiments.append(exp)
            if not isinstance(raw_exp, Mapping):
                continue
            # Cross-experiment checks use the raw values, so they are reported even when
            # some other field of the same experiment is invalid.
            exp_key = raw_exp.get("key")
            name = exp_key if isinstance(exp_key, str) else f"#{j}"
            rng = _as_range(raw_exp.get("range"))
            if rng is not None:
                for other, other_name, other_where in claimed:
                    if rng[0] < other[1] and other[0] < rng[1]:
                        self._problem(
                            f"{ewhere}.range",
                            f"{_fmt_range(rng)} of {name!r} overlaps {_fmt_range(other)} of "
                            f"{other_name!r} (at {other_where})",
                        )
                claimed.append((rng, name, ewhere))
            overrides = raw_exp.get("overrides")
            if isinstance(overrides, Mapping):
                for user in overrides:
                    if not isinstance(user, str):
                        continue
                    if user in forced_at:
                        first_name, first_where = forced_at[user]
                        self._problem(
                            f"{ewhere}.overrides.{user}",
                            f"user {user!r} is already forced into {first_name!r} of the same layer "
                            f"(at {first_where}); a user can be in one experiment per layer",
                        )
                    else:
                        forced_at[user] = (name, ewhere)

        if len(self._problems) > before:
            return None
        assert key is not None and surface is not None
        return Layer(key=key, surface=surface, experiments=tuple(experiments))

    def _surface(self, where: str, raw: Mapping[object, object]) -> Surface | None:
        value = raw["surface"]
        if isinstance(value, str) and value in _SURFACES:
            return Surface(value)
        allowed = ", ".join(sorted(_SURFACES))
        self._problem(f"{where}.surface", f"unknown surface {_show(value)} (allowed: {allowed})")
        return None

    def _experiment(
        self, where: str, raw: object, layer: tuple[str | None, Surface | None] | None
    ) -> Experiment | None:
        """Parse one experiment; ``layer`` is ``(key, surface)`` of its layer (None if invalid)."""
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping, got {_type_name(raw)}")
            return None
        before = len(self._problems)
        self._unknown_keys(where, raw, _EXPERIMENT_KEYS if layer is None else _LAYER_EXPERIMENT_KEYS)

        key_raw = self._required(where, raw, "key")
        key = self._key(f"{where}.key", key_raw, "key") if "key" in raw else None

        surface: Surface | None = None
        if layer is None:
            self._required(where, raw, "surface")
            if "surface" in raw:
                surface = self._surface(where, raw)
        else:
            surface = layer[1]
            if "surface" in raw and raw["surface"] != layer[1] and layer[1] is not None:
                self._problem(
                    f"{where}.surface", f"{_show(raw['surface'])} does not match its layer's surface {layer[1].value!r}"
                )

        seed = self._seed(where, raw, key)

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

        start = self._timestamp(f"{where}.start", raw["start"]) if "start" in raw else None
        stop = self._timestamp(f"{where}.stop", raw["stop"]) if "stop" in raw else None
        if start is not None and stop is not None and stop <= start:
            self._problem(f"{where}.stop", f"must be after start ({start.isoformat()}), got {stop.isoformat()}")

        rng: tuple[float, float] | None = None
        if layer is not None:
            rng_raw = self._required(where, raw, "range")
            if "range" in raw:
                rng = _as_range(rng_raw)
                if rng is None:
                    self._problem(
                        f"{where}.range", f"must be [start, end] with 0 <= start < end <= 1, got {_show(rng_raw)}"
                    )

        variants = self._variants(f"{where}.variants", self._required(where, raw, "variants"), "variants" in raw)
        if "metrics" in raw:
            self._metrics(f"{where}.metrics", raw["metrics"])
        overrides = self._overrides(f"{where}.overrides", raw.get("overrides"), raw.get("variants"))

        if isinstance(key_raw, str):
            self._unique(f"{where}.key", "experiment key", key_raw, self._first_experiment_key)
        if seed is not None:
            self._unique(f"{where}.seed", "seed", seed, self._first_seed)

        if len(self._problems) > before:
            return None
        assert key is not None and surface is not None and seed is not None
        assert hash_version is not None and coverage is not None and status is not None
        assert variants is not None and overrides is not None
        return Experiment(
            key=key,
            surface=surface,
            seed=seed,
            hash_version=hash_version,
            coverage=coverage,
            status=status,
            variants=variants,
            start=start,
            stop=stop,
            overrides=overrides,
            layer=None if layer is None else layer[0],
            range=rng,
        )

    def _overrides(self, where: str, raw: object, raw_variants: object) -> Mapping[str, str] | None:
        if raw is None:
            return _NO_OVERRIDES
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping of user id to variant key, got {_type_name(raw)}")
            return None
        variant_keys = [
            v["key"] for v in (raw_variants if isinstance(raw_variants, list) else []) if isinstance(v, Mapping)
        ]
        known = [k for k in variant_keys if isinstance(k, str)]
        before = len(self._problems)
        forced: dict[str, str] = {}
        for user, variant in raw.items():
            uwhere = f"{where}.{user}"
            if not isinstance(user, str) or not user:
                self._problem(where, f"user id must be a non-empty string (quote it), got {_show(user)}")
            elif not isinstance(variant, str) or variant not in known:
                self._problem(uwhere, f"unknown variant {_show(variant)} (variants: {', '.join(known) or 'none'})")
            else:
                forced[user] = variant
        if len(self._problems) > before:
            return None
        return MappingProxyType(forced) if forced else _NO_OVERRIDES

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
            return _NO_PARAMS
        if not isinstance(raw, Mapping):
            self._problem(where, f"must be a mapping, got {_type_name(raw)}")
            return None
        before = len(self._problems)
        values: dict[str, object] = {}
        for name, value in raw.items():
            pwhere = f"{where}.{name}"
            spec = TUNABLE_PARAMS.get(name) if isinstance(name, str) else None
            if spec is None:
                allowed = ", ".join(sorted(TUNABLE_PARAMS))
                self._problem(where, f"unknown param {name!r} (allowed: {allowed})")
            elif spec.kind == "model":
                values[name] = self._model_version(pwhere, value)
            elif spec.kind == "int":
                values[name] = self._int_in(pwhere, value, spec.lo, spec.hi)
            else:
                values[name] = self._fraction(pwhere, value)
        if len(self._problems) > before:
            return None
        return VariantParams(**values)

    def _model_version(self, where: str, value: object) -> str | None:
        if not isinstance(value, str) or not value:
            self._problem(where, f"must be a non-empty string, got {_show(value)}")
            return None
        if self._known_models is not None and value not in self._known_models:
            known = ", ".join(sorted(self._known_models)) or "none"
            self._problem(where, f"unknown model version {value!r} (known: {known})")
            return None
        return value
