"""Typed settings, read once at start-up; every problem names its key.

Settings come from defaults, then an optional YAML file (``--config``), then ``ENCORE_<KEY>`` environment
variables (``settings_from_env``), then command-line flags. ``settings_table()`` renders every key
(its variable, type, default and the comment below) as the README's table.
YAML layout (every key optional)::

    host: 127.0.0.1             # address of the gRPC listener and of the metrics/health HTTP endpoint
    port: 50051                 # gRPC port; 0 picks a free one
    metrics_port: 9464          # null disables the metrics endpoint
    redis_url: null             # null: embedded in-memory feature store
    redis_timeout_ms: 20        # per-call Redis timeout; a slower read fails open (degraded)
    load_features: false        # write the bundle's user snapshot into Redis at start-up
    experiments: null           # path to an experiments YAML file (hot-reloaded when it changes)
    experiments_reload_s: 2.0   # how often the experiments file is checked for changes
    experiments_store: null     # file:///dir or redis[s]://…: follow the experiments store's revisions
                                # instead of a file (`encore experiments import` commits a file to it)
    experiments_store_poll_s: 0.5  # how often every process reads the store's head
    bundle_reload_s: 5.0        # how often --bundle (e.g. a symlink) is checked for a new bundle; 0 = never
    exposure_log_dir: exposures # rotating JSONL exposure logs; null disables exposure logging
    exposure_queue_size: 10000  # exposures waiting to be written; beyond it they are dropped and counted
    exposure_file_mb: 64        # rotate exposure files at this size
    outcome_log_dir: outcomes   # rotating JSONL outcome logs (every accepted RecordEvents event); null disables
    outcome_queue_size: 10000   # outcomes waiting to be written; beyond it they are dropped and counted
    outcome_file_mb: 64         # rotate outcome files at this size
    capture_fraction: 0.0       # share of users whose Rank exchanges are captured for replay (by user hash)
    capture_dir: captures       # length-delimited encore.v1.CapturedRank files
    capture_file_mb: 64         # rotate capture files at this size
    cpu_threads: 4              # threads for FAISS/ONNX calls off the event loop
    score_inline: true          # run ONNX scoring on the event loop's thread (no thread hop; scale with --workers)
    max_in_flight: 4            # per process: handlers running at once; more are refused (RESOURCE_EXHAUSTED)
    max_pending: 8              # per process: calls gRPC core holds before Python picks them up; more are
                                # refused by gRPC core itself (the client sees CANCELLED), no Python runs
    queue_delay_target_ms: 5    # CoDel: a queueing delay whose minimum stays above this for a whole
                                # interval sheds new calls (RESOURCE_EXHAUSTED, grpc-retry-pushback-ms)
    queue_delay_interval_ms: 100  # CoDel: how long the minimum queueing delay must stay above target to shed
    max_user_id_length: 128     # longer user ids (and request ids) are refused (INVALID_ARGUMENT)
    tls_cert: null              # PEM certificate chain: serve gRPC over TLS
    tls_key: null               # PEM private key for tls_cert
    tls_client_ca: null         # PEM CA bundle: require and verify client certificates (mutual TLS)
    admin_port: null            # admin listener (Status, Reload); null = off, 0 = a free port
    admin_host: 127.0.0.1       # loopback unless you really mean it
    admin_token_file: null      # file holding the admin bearer token (or set ENCORE_ADMIN_TOKEN)
    tracing: false              # OpenTelemetry spans per Rank/RecordEvents call and per pipeline stage
    otlp_endpoint: null         # OTLP/gRPC collector for the spans, e.g. http://collector:4317 (https: TLS);
                                # null: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, else http://localhost:4317
    trace_sample_ratio: 1.0     # share of new traces recorded (0..1); a caller's sampled traceparent is followed
    max_events: 100             # events per RecordEvents call; more are refused (INVALID_ARGUMENT)
    log_format: text            # text (one human-readable line per record) or json (one JSON object per line)
    stages: {user_features_ms: 15, retrieval_ms: 20, scoring_ms: 25, reserve_ms: 2}
    surfaces:
      home:        {budget_ms: 80, default_limit: 20, max_limit: 100, retrieval_size: 300, diversity_cap: 2,
                    co_listen_size: 150, known_items: exclude, cascade_size: 150}
      now_playing: {budget_ms: 60, default_limit: 10, max_limit: 50, retrieval_size: 200, diversity_cap: 2,
                    seed_weight: 0.7, seed_neighbors_size: 100, co_listen_size: 150, known_items: exclude,
                    open_slots: 2, cascade_size: 150}
    # stages: the stage's time limit in ms, capped by what is left of the budget; an overrun falls back
    # reserve_ms: kept back from the stages for filtering, selection and the response
    # budget_ms: the surface's latency budget, capped by the client's gRPC deadline
    # default_limit: items answered when the request gives no limit
    # max_limit: the most items a request may ask for
    # retrieval_size: ANN candidates (FAISS)
    # popularity_size: candidates of the in-process popularity fallback
    # seed_weight, recent_weight: query blend weights (0..1) of the seed item and of the recent plays
    # diversity_cap: at most this many items per artist in the answer
    # co_listen_size: candidates co-listened with the user's history (the item-neighbour table)
    # seed_neighbors_size: Now Playing: the seed's own co-listened neighbours, best first
    # shadow_model: a model version to shadow-score every request with, after the response (any surface)
    # known_items: exclude (never recommend what the user already knows: the snapshot's known items)
    #              or keep (known items may come back); *_size: 0 disables that candidate source
    # open_slots (Now Playing): the first N positions by score, then the seed's 50 nearest neighbours
    #              first; 0 = neighbours from the top, 1000 = off (score order)
    # cascade_size: the bundle's light model scores every candidate, the full model its best N;
    #              0 = the full model scores every candidate (also when the bundle has no light model)
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from ranking.assembly import DEFAULT_PARAMS
from ranking.budget import StageLimits
from ranking.types import KNOWN_ITEMS_POLICIES, RankingParams, Surface
from serving.admission import AdmissionLimits
from serving.errors import ConfigError

#: ``log_format``: ``text`` (``%(asctime)s %(levelname)s …``) or ``json`` (``serving.request_context``).
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")


@dataclass(frozen=True)
class SurfaceConfig:
    budget_ms: float
    default_limit: int
    max_limit: int
    params: RankingParams


DEFAULT_SURFACES: dict[Surface, SurfaceConfig] = {
    Surface.HOME: SurfaceConfig(80.0, 20, 100, DEFAULT_PARAMS[Surface.HOME]),
    Surface.NOW_PLAYING: SurfaceConfig(60.0, 10, 50, DEFAULT_PARAMS[Surface.NOW_PLAYING]),
}


@dataclass(frozen=True)
class Settings:
    bundle: Path
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = 9464
    redis_url: str | None = None
    redis_timeout_ms: float = 20.0
    load_features: bool = False
    experiments: Path | None = None
    experiments_reload_s: float = 2.0
    experiments_store: str | None = None
    experiments_store_poll_s: float = 0.5
    bundle_reload_s: float = 5.0
    exposure_log_dir: Path | None = Path("exposures")
    exposure_queue_size: int = 10_000
    exposure_file_mb: int = 64
    outcome_log_dir: Path | None = Path("outcomes")
    outcome_queue_size: int = 10_000
    outcome_file_mb: int = 64
    capture_fraction: float = 0.0
    capture_dir: Path = Path("captures")
    capture_file_mb: int = 64
    cpu_threads: int = 4
    score_inline: bool = True
    max_in_flight: int = 4
    max_pending: int = 8
    queue_delay_target_ms: float = 5.0
    queue_delay_interval_ms: float = 100.0
    max_user_id_length: int = 128
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    admin_port: int | None = None
    admin_host: str = "127.0.0.1"
    admin_token_file: Path | None = None
    tracing: bool = False
    otlp_endpoint: str | None = None
    trace_sample_ratio: float = 1.0
    max_events: int = 100
    log_format: LogFormat = "text"
    stages: StageLimits = field(default_factory=StageLimits)
    surfaces: dict[Surface, SurfaceConfig] = field(default_factory=lambda: dict(DEFAULT_SURFACES))

    @property
    def admission(self) -> AdmissionLimits:
        return AdmissionLimits(
            max_in_flight=self.max_in_flight,
            max_pending=self.max_pending,
            target_s=self.queue_delay_target_ms / 1000.0,
            interval_s=self.queue_delay_interval_ms / 1000.0,
        )


_SCALARS: dict[str, tuple[type, ...]] = {
    "host": (str,),
    "port": (int,),
    "metrics_port": (int, type(None)),
    "redis_url": (str, type(None)),
    "redis_timeout_ms": (int, float),
    "load_features": (bool,),
    "experiments": (str, type(None)),
    "experiments_reload_s": (int, float),
    "experiments_store": (str, type(None)),
    "experiments_store_poll_s": (int, float),
    "bundle_reload_s": (int, float),
    "exposure_log_dir": (str, type(None)),
    "exposure_queue_size": (int,),
    "exposure_file_mb": (int,),
    "outcome_log_dir": (str, type(None)),
    "outcome_queue_size": (int,),
    "outcome_file_mb": (int,),
    "capture_fraction": (int, float),
    "capture_dir": (str,),
    "capture_file_mb": (int,),
    "cpu_threads": (int,),
    "score_inline": (bool,),
    "max_in_flight": (int,),
    "max_pending": (int,),
    "queue_delay_target_ms": (int, float),
    "queue_delay_interval_ms": (int, float),
    "max_user_id_length": (int,),
    "tls_cert": (str, type(None)),
    "tls_key": (str, type(None)),
    "tls_client_ca": (str, type(None)),
    "admin_port": (int, type(None)),
    "admin_host": (str,),
    "admin_token_file": (str, type(None)),
    "tracing": (bool,),
    "otlp_endpoint": (str, type(None)),
    "trace_sample_ratio": (int, float),
    "max_events": (int,),
    "log_format": (str,),
}
_PATHS = frozenset(
    {
        "experiments",
        "exposure_log_dir",
        "outcome_log_dir",
        "capture_dir",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "admin_token_file",
    }
)
_STAGE_KEYS = {
    "user_features_ms": "user_features",
    "retrieval_ms": "retrieval",
    "scoring_ms": "scoring",
    "reserve_ms": "reserve",
}
_SURFACE_KEYS = {"budget_ms", "default_limit", "max_limit"}
_PARAM_KEYS = {f.name for f in fields(RankingParams)} - {"model_version"}
#: Integer params that may be 0 (a candidate source off; seed neighbours from the top).
_OPTIONAL_SIZES = {"seed_neighbors_size", "co_listen_size", "open_slots", "cascade_size"}


def _number(source: str, key: str, value: Any, *, minimum: float, integer: bool = False) -> Any:
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{source}: {key}: must be {kind} >= {minimum}, got {value!r}")
    return value


def load_settings(
    bundle: Path, config_file: Path | None = None, *, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Defaults ← YAML file ← ``ENCORE_<KEY>`` variables of ``environ`` (default ``os.environ``; see
    ``settings_from_env``) ← non-None ``overrides`` (flags). Raises ``ConfigError`` naming the key, or
    the environment variable when the value came from one."""
    data: dict[str, Any] = {}
    source = "settings"
    if config_file is not None:
        source = str(config_file)
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{config_file}: cannot read settings: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: expected a mapping at the top level")
        data = dict(loaded or {})
    from_env, variables = settings_from_env(os.environ if environ is None else environ)
    _merge(data, from_env)
    flags = {k: v for k, v in overrides.items() if v is not None}
    data.update(flags)
    variables = {key: var for key, var in variables.items() if key.split(".")[0] not in flags}
    try:
        return _validated(bundle, source, data)
    except ConfigError as exc:
        named = _naming_variable(exc, source, variables)
        if named is None:
            raise
        raise named from exc


def _validated(bundle: Path, source: str, data: dict[str, Any]) -> Settings:
    """``data`` (YAML keys, every layer merged) checked key by key and applied over the defaults."""
    settings = Settings(bundle=bundle)
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SCALARS:
            if not isinstance(value, _SCALARS[key]) or (isinstance(value, bool) and bool not in _SCALARS[key]):
                raise ConfigError(
                    f"{source}: {key}: expected {' or '.join(t.__name__ for t in _SCALARS[key])}, got {value!r}"
                )
            is_path = key in _PATHS and value is not None
            changes[key] = Path(str(value)) if is_path else value
        elif key == "stages":
            changes["stages"] = _stages(source, value)
        elif key == "surfaces":
            changes["surfaces"] = _surfaces(source, value)
        else:
            raise ConfigError(f"{source}: {key}: unknown setting")
    _number(source, "experiments_reload_s", changes.get("experiments_reload_s", 2.0), minimum=0.1)
    _number(source, "bundle_reload_s", changes.get("bundle_reload_s", 5.0), minimum=0)
    _number(source, "experiments_store_poll_s", changes.get("experiments_store_poll_s", 0.5), minimum=0.05)
    _number(source, "queue_delay_target_ms", changes.get("queue_delay_target_ms", 5.0), minimum=0.1)
    _number(source, "queue_delay_interval_ms", changes.get("queue_delay_interval_ms", 100.0), minimum=1)
    if not 0.0 <= changes.get("capture_fraction", 0.0) <= 1.0:
        raise ConfigError(f"{source}: capture_fraction: must be in 0..1, got {changes['capture_fraction']!r}")
    for key in (
        "port",
        "cpu_threads",
        "max_user_id_length",
        "max_events",
        "exposure_queue_size",
        "exposure_file_mb",
        "outcome_queue_size",
        "outcome_file_mb",
        "max_in_flight",
        "max_pending",
    ):
        _number(source, key, changes.get(key, getattr(settings, key)), minimum=0 if key == "port" else 1, integer=True)
    result = replace(settings, **changes)
    if result.experiments is not None and result.experiments_store is not None:
        raise ConfigError(
            f"{source}: experiments and experiments_store: give one; with a store the file is import/export "
            "(`encore experiments import FILE --store URL`)"
        )
    if result.log_format not in LOG_FORMATS:
        raise ConfigError(f"{source}: log_format: must be one of {', '.join(LOG_FORMATS)}, got {result.log_format!r}")
    if (result.tls_cert is None) != (result.tls_key is None):
        raise ConfigError(f"{source}: tls_cert and tls_key: give both or neither")
    if result.tls_client_ca is not None and result.tls_cert is None:
        raise ConfigError(f"{source}: tls_client_ca: mutual TLS needs tls_cert and tls_key too")
    if not 0.0 <= result.trace_sample_ratio <= 1.0:
        raise ConfigError(f"{source}: trace_sample_ratio: must be in 0..1, got {result.trace_sample_ratio!r}")
    if result.otlp_endpoint is not None:
        _otlp_endpoint(source, result.otlp_endpoint)
    return result


def _otlp_endpoint(source: str, value: str) -> None:
    """An OTLP/gRPC collector address: http://host:port (plaintext) or https://host:port (TLS)."""
    url = urlsplit(value)
    try:
        port = url.port
    except ValueError:  # not a number, or out of range
        port = None
    if url.scheme not in ("http", "https") or not url.hostname or port is None or url.path not in ("", "/"):
        raise ConfigError(
            f"{source}: otlp_endpoint: must be http://host:port or https://host:port (e.g. http://collector:4317), "
            f"got {value!r}"
        )


def _stages(source: str, value: Any) -> StageLimits:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: stages: expected a mapping")
    limits: dict[str, float] = {}
    for key, ms in value.items():
        if key not in _STAGE_KEYS:
            raise ConfigError(f"{source}: stages.{key}: unknown stage (known: {', '.join(_STAGE_KEYS)})")
        limits[_STAGE_KEYS[key]] = _number(source, f"stages.{key}", ms, minimum=0) / 1000.0
    return replace(StageLimits(), **limits)


def _surfaces(source: str, value: Any) -> dict[Surface, SurfaceConfig]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: surfaces: expected a mapping")
    result = dict(DEFAULT_SURFACES)
    for name, body in value.items():
        try:
            surface = Surface(name)
        except ValueError:
            raise ConfigError(f"{source}: surfaces.{name}: unknown surface (known: home, now_playing)") from None
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: surfaces.{name}: expected a mapping")
        base = result[surface]
        top: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for key, v in body.items():
            where = f"surfaces.{name}.{key}"
            if key == "budget_ms":
                top[key] = float(_number(source, where, v, minimum=1))
            elif key in _SURFACE_KEYS:
                top[key] = _number(source, where, v, minimum=1, integer=True)
            elif key in ("seed_weight", "recent_weight"):
                params[key] = float(_number(source, where, v, minimum=0))
                if params[key] > 1:
                    raise ConfigError(f"{source}: {where}: must be in 0..1, got {v!r}")
            elif key == "shadow_model":
                if not isinstance(v, str) or not v:
                    raise ConfigError(f"{source}: {where}: must be a model version, got {v!r}")
                params[key] = v
            elif key == "known_items":
                if v not in KNOWN_ITEMS_POLICIES:
                    raise ConfigError(f"{source}: {where}: must be one of {', '.join(KNOWN_ITEMS_POLICIES)}, got {v!r}")
                params[key] = v
            elif key in _OPTIONAL_SIZES:
                params[key] = _number(source, where, v, minimum=0, integer=True)
            elif key in _PARAM_KEYS:
                params[key] = _number(source, where, v, minimum=1, integer=True)
            else:
                raise ConfigError(f"{source}: {where}: unknown key")
        merged = replace(base, **top, params=replace(base.params, **params))
        if merged.default_limit > merged.max_limit:
            raise ConfigError(f"{source}: surfaces.{name}.default_limit: exceeds max_limit ({merged.max_limit})")
        result[surface] = merged
    return result


# ---------------------------------------------------------------------------------------------
# The environment (ENCORE_<KEY>) and the settings table

#: A setting's variable is this prefix and its key in upper case, dots as underscores: ``port`` →
#: ``ENCORE_PORT``, ``stages.retrieval_ms`` → ``ENCORE_STAGES_RETRIEVAL_MS``,
#: ``surfaces.now_playing.budget_ms`` → ``ENCORE_SURFACES_NOW_PLAYING_BUDGET_MS``.
ENV_PREFIX = "ENCORE_"
#: ``--bundle`` from the environment (the bundle is not a YAML key; ``encore serve`` reads it).
BUNDLE_ENV = "ENCORE_BUNDLE"
#: What a variable of a nullable setting says for null (YAML's ``null``).
NULL = "null"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_KINDS: dict[object, str] = {bool: "bool", int: "int", float: "float", str: "str", Path: "path"}


@dataclass(frozen=True)
class SettingSpec:
    """One settings key as the environment and the settings table see it."""

    key: str  #: the YAML key, dotted when nested (``surfaces.home.budget_ms``)
    env: str  #: its variable (``ENCORE_SURFACES_HOME_BUDGET_MS``)
    kind: str  #: int, float, bool, str, path, or yaml (any other type: the value is parsed as YAML)
    nullable: bool
    default: Any
    description: str  #: from the layout in this module's docstring
    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        kind = f"one of {', '.join(self.choices)}" if self.choices else self.kind
        return f"{kind} or null" if self.nullable else kind


def env_name(key: str) -> str:
    """``surfaces.home.budget_ms`` → ``ENCORE_SURFACES_HOME_BUDGET_MS``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def setting_specs() -> tuple[SettingSpec, ...]:
    """Every settings key: each ``Settings`` field (a new field is picked up as it is added; its kind
    comes from its annotation), each stage and each surface's keys, in that order."""
    top, notes = _descriptions(__doc__ or "")
    defaults = Settings(bundle=Path())
    specs: list[SettingSpec] = []
    hints = typing.get_type_hints(Settings)
    for f in fields(Settings):
        if f.name not in ("bundle", "stages", "surfaces"):
            description = top.get(f.name) or notes.get(f.name, "")
            specs.append(_spec(f.name, hints[f.name], getattr(defaults, f.name), description))
    for key, attr in _STAGE_KEYS.items():
        default_ms = round(getattr(defaults.stages, attr) * 1000.0, 6)
        specs.append(_spec(f"stages.{key}", float, default_ms, notes.get(key) or notes.get("stages", "")))
    param_hints = typing.get_type_hints(RankingParams)
    for surface, config in defaults.surfaces.items():
        own: list[tuple[str, object, Any]] = [
            ("budget_ms", float, config.budget_ms),
            ("default_limit", int, config.default_limit),
            ("max_limit", int, config.max_limit),
        ]
        own += [(f.name, param_hints[f.name], getattr(config.params, f.name)) for f in fields(RankingParams)]
        for key, hint, default in own:
            if key in _SURFACE_KEYS or key in _PARAM_KEYS:
                specs.append(_spec(f"surfaces.{surface.value}.{key}", hint, default, notes.get(key, "")))
    return tuple(specs)


def settings_from_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings ``environ`` sets: ``ENCORE_<KEY>`` for every key of ``setting_specs``, parsed by
    the key's kind (int, float, bool: true/false/yes/no/on/off/1/0, str, path; ``null`` for a
    nullable key). An empty variable counts as unset; other ``ENCORE_*`` names (``ENCORE_ADMIN_TOKEN``)
    are not settings and are left alone. Returns the values as a YAML mapping (nested keys nested)
    and the variable of each dotted key; a value that does not parse raises ``ConfigError`` naming
    the variable."""
    values: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for spec in setting_specs():
        raw = environ.get(spec.env)
        if raw is None or not raw.strip():
            continue
        *parents, leaf = spec.key.split(".")
        node = values
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = parse_env_value(spec, raw)
        variables[spec.key] = spec.env
    return values, variables


def parse_env_value(spec: SettingSpec, raw: str) -> Any:
    """``raw`` as ``spec``'s kind; ``ConfigError`` naming the variable when it is not one."""
    text = raw.strip()
    if spec.nullable and text.lower() == NULL:
        return None
    try:
        value = _parse(spec.kind, text)
    except ValueError:
        raise ConfigError(f"{spec.env}: expected {spec.type_name}, got {raw!r}") from None
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{spec.env}: expected {spec.type_name}, got {raw!r}")
    return value


def bundle_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """``ENCORE_BUNDLE`` (``--bundle`` wins over it), or None when unset or empty."""
    raw = (os.environ if environ is None else environ).get(BUNDLE_ENV, "").strip()
    return Path(raw) if raw else None


def settings_table() -> str:
    """The Markdown table of every setting (the README's, between its settings-table markers)."""
    rows = [
        "| setting | environment variable | type | default | description |",
        "|---|---|---|---|---|",
        f"| `bundle` | `{BUNDLE_ENV}` | path | newest under `./bundles` | the bundle to serve "
        "(`--bundle`; not a YAML key) |",
    ]
    for spec in setting_specs():
        cells = (f"`{spec.key}`", f"`{spec.env}`", spec.type_name, _shown(spec.default), spec.description)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _spec(key: str, hint: object, default: Any, description: str) -> SettingSpec:
    nullable = False
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        nullable = len(rest) < len(args)
        hint = rest[0] if len(rest) == 1 else object
    choices: tuple[str, ...] = ()
    if typing.get_origin(hint) is typing.Literal:
        choices = tuple(str(a) for a in typing.get_args(hint))
        hint = str
    return SettingSpec(key, env_name(key), _KINDS.get(hint, "yaml"), nullable, default, description, choices)


def _parse(kind: str, text: str) -> Any:
    if kind == "bool":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(text)
    if kind == "int":
        return int(text, 10)
    if kind == "float":
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(text)
        return number
    if kind in ("str", "path"):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(text) from exc


def _shown(value: Any) -> str:
    if value is None:
        return f"`{NULL}`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _merge(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """``layer`` over ``into``, mappings merged key by key (a variable sets one nested key)."""
    for key, value in layer.items():
        below = into.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            into[key] = dict(below)
            _merge(into[key], value)
        else:
            into[key] = value


def _naming_variable(exc: ConfigError, source: str, variables: Mapping[str, str]) -> ConfigError | None:
    """``exc`` about a key whose value came from a variable, re-worded to name the variable first."""
    message = str(exc)
    if not message.startswith(f"{source}: "):
        return None
    rest = message[len(source) + 2 :]
    for key in sorted(variables, key=len, reverse=True):
        if rest.startswith((f"{key}:", f"{key} ")):
            return ConfigError(f"{variables[key]}: {rest}")
    return None


def _descriptions(doc: str) -> tuple[dict[str, str], dict[str, str]]:
    """From the YAML layout of ``doc``: each top-level key's comment, and the notes below the layout
    (``# key[, key]: text``), continuation lines joined."""
    top: dict[str, str] = {}
    notes: dict[str, str] = {}
    layout = doc.split("::\n", 1)[1] if "::\n" in doc else ""
    current: tuple[dict[str, str], list[str]] | None = None
    for line in layout.splitlines():
        key_line = re.match(r"^    ([a-z_]+):[^#]*(?:#\s*(.*))?$", line)
        note = re.match(r"^    # (\S.*)$", line)
        more = re.match(r"^\s{5,}#\s*(.*)$", line) or re.match(r"^    #\s{2,}(.*)$", line)
        if key_line:
            top[key_line.group(1)] = (key_line.group(2) or "").strip()
            current = (top, [key_line.group(1)])
        elif note:
            head, _, text = note.group(1).partition(": ")
            keys = re.findall(r"\b[a-z_]+\b", head)
            for key in keys:
                notes[key] = text.strip()
            current = (notes, keys)
        elif more and current is not None:
            target, keys = current
            for key in keys:
                target[key] = f"{target[key]} {more.group(1).strip()}".strip()
        else:
            current = None
    return top, notes
