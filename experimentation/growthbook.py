"""GrowthBook interchange: an experiments config as a GrowthBook SDK payload, and back.

``export_payload(config, now)`` returns ``{"features": {...}, "encore": {...}}``. Contract: a
GrowthBook SDK given ``payload["features"]`` and the attributes ``{"id": user_id, "surface":
surface}`` evaluates every feature to what ``Assigner(config).assign(user_id, surface)`` assigns
at ``now``: the same experiments, variants and params, forced users as ``source == "force"``
(Encore's ``exposed=False``), hashed ones as ``source == "experiment"``. Mapping:

- holdout (coverage > 0) -> feature ``holdout.key``: one experiment rule, variations
  ``["holdout", "general"]``, weights ``[c, 1 - c]``, its seed, hashVersion 2; and on every
  experiment rule the filter ``{"seed": holdout seed, "hashVersion": 2, "ranges": [[c, 1]]}``
  (only "general" users are hashed into experiments). Forced users bypass it, as in Encore.
- experiment -> feature ``experiment.key`` (``defaultValue`` null: not in it), in config order
  (layers, then independent experiments: the slot order, which sets param precedence). Values are
  ``{"experiment": key, "variant": variant key, "params": {...}}``. Its rules:
  overrides that apply at ``now`` -> one force rule per variant, first, with the condition
  ``{"surface": s, "id": {"$in": users}}``; a live experiment (running, ``start <= now < stop``)
  -> one experiment rule (key, name, seed, hashAttribute "id", hashVersion, coverage, weights,
  variations, meta keys, condition ``{"surface": s}``); a layered one adds the legacy namespace
  ``[layer, start, end]`` (repeated as a hash v1 filter on ``"__" + layer`` when a holdout filter
  is present: SDKs ignore ``namespace`` when ``filters`` exist) and ``"id": {"$nin": users}``
  for the users forced into the layer's other experiments. A non-live experiment has no
  experiment rule; its Encore definition is in ``encore.inactive``.
- ``encore``: ``schema``, ``exported_at``, ``attributes``, ``holdout`` (its feature key or null),
  ``schedules`` (start/stop of live experiments), ``inactive`` and ``unsupported``: one
  human-readable line per difference between the payload and Encore, naming the experiment.

``import_payload(payload)`` is the inverse: it returns the experiments YAML document (a dict
``parse_experiments`` accepts; it is validated before it is returned) and raises
``ExperimentConfigError`` naming the payload field of the first construct Encore cannot represent.
Exporting the imported document again gives the same payload. Experiment ``metrics`` are not part
of ``ExperimentsConfig`` and are not exported.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Final

from serving.experiments.assignment import GENERAL_VARIANT, HOLDOUT_VARIANT, Assigner, utc_now
from serving.experiments.config import (
    WEIGHT_SUM_TOLERANCE,
    Experiment,
    ExperimentConfigError,
    ExperimentsConfig,
    ExperimentStatus,
    Holdout,
    parse_experiments,
)

__all__ = ["SCHEMA", "export_payload", "import_payload"]

SCHEMA: Final[int] = 1
"""Version of the payload's ``encore`` section."""

Json = dict[str, object]

_ATTRIBUTES: Final[Mapping[str, str]] = {
    "id": "the user id: the hash attribute of every rule",
    "surface": "the surface being ranked (home | now_playing): every experiment rule has a condition on it",
}
_EXPERIMENT_RULE_KEYS: Final[frozenset[str]] = frozenset(
    {"id", "key", "name", "phase", "seed", "hashAttribute", "hashVersion", "coverage", "weights", "variations"}
    | {"meta", "condition", "namespace", "filters"}
)
_FORCE_RULE_KEYS: Final[frozenset[str]] = frozenset({"id", "condition", "force"})
_HOLDOUT_RULE_KEYS: Final[frozenset[str]] = _EXPERIMENT_RULE_KEYS - {"condition", "namespace", "filters"}
_TOP_KEYS: Final[frozenset[str]] = frozenset({"features", "encore", "status", "dateUpdated"})
_ENCORE_KEYS: Final[frozenset[str]] = frozenset(
    {"schema", "exported_at", "attributes", "holdout", "schedules", "inactive", "unsupported"}
)


# --- export ------------------------------------------------------------------------------


def export_payload(config: ExperimentsConfig, now: dt.datetime | None = None) -> Json:
    """The GrowthBook SDK payload of ``config`` as assigned at ``now`` (default: the current time).

    ``now`` must be timezone-aware. The payload is plain JSON data (``json.dumps`` accepts it).
    """
    now = utc_now() if now is None else now
    holdout = config.holdout if config.holdout is not None and config.holdout.coverage > 0 else None
    features: Json = {}
    unsupported: list[str] = []
    if holdout is not None:
        features[holdout.key] = _holdout_feature(holdout)
        unsupported.append(
            f"holdout {holdout.key!r}: an experiment-like split (feature {holdout.key!r}: holdout/general, hash v2 "
            f"of seed {holdout.seed!r}), excluded from every experiment rule by a filter; not GrowthBook's built-in "
            "holdout. Forced users bypass it, as in Encore"
        )
    elif config.holdout is not None:
        unsupported.append(
            f"holdout {config.holdout.key!r}: coverage 0, Encore assigns no one to it (not even 'general'): "
            "not exported"
        )
    schedules: Json = {}
    inactive: Json = {}
    for layer in config.layers:
        if not layer.experiments:
            unsupported.append(f"layer {layer.key!r} has no experiments: not exported")
    groups = [(layer.key, layer.experiments) for layer in config.layers] + [(None, (e,)) for e in config.experiments]
    for layer_key, experiments in groups:
        forced = {e.key: _forced_users(e) for e in experiments if _forcing(e, now)}
        for exp in experiments:
            rules: list[Json] = list(_force_rules(exp)) if exp.key in forced else []
            if exp.is_active(now):
                others = [user for key, users in forced.items() if key != exp.key for user in users]
                rules.append(_experiment_rule(exp, others, holdout))
                schedule = _schedule(exp)
                if schedule:
                    schedules[exp.key] = schedule
            else:
                inactive[exp.key] = _definition(exp, overrides=exp.key not in forced)
            features[exp.key] = {"defaultValue": None, "rules": rules}
            unsupported.extend(_differences(exp, layer_key, now, forced=exp.key in forced))
    unsupported.extend(
        f"param {c.param!r} on {c.surface.value}: experiments {c.winner!r} and {c.shadowed!r} can both set it; Encore "
        f"applies {c.winner!r} (the earlier slot); GrowthBook features are independent: apply their values in "
        "feature order, the first wins"
        for c in Assigner(config).conflicts
    )
    encore: Json = {
        "schema": SCHEMA,
        "exported_at": now.isoformat(),
        "attributes": dict(_ATTRIBUTES),
        "holdout": None if holdout is None else holdout.key,
        "schedules": schedules,
        "inactive": inactive,
        "unsupported": unsupported,
    }
    return {"features": features, "encore": encore}


def _forcing(exp: Experiment, now: dt.datetime) -> bool:
    """Whether ``exp``'s overrides apply at ``now`` (not stopped, before its stop; start ignored)."""
    return bool(exp.overrides) and exp.status is not ExperimentStatus.STOPPED and (exp.stop is None or now < exp.stop)


def _forced_users(exp: Experiment) -> tuple[str, ...]:
    """The users of ``exp.overrides`` grouped by variant, in variant order (the force rules' order)."""
    return tuple(user for v in exp.variants for user, key in exp.overrides.items() if key == v.key)


def _holdout_feature(holdout: Holdout) -> Json:
    rule: Json = {
        "key": holdout.key,
        "name": holdout.key,
        "seed": holdout.seed,
        "hashAttribute": "id",
        "hashVersion": 2,
        "coverage": 1.0,
        "weights": [holdout.coverage, 1.0 - holdout.coverage],
        "variations": [HOLDOUT_VARIANT, GENERAL_VARIANT],
        "meta": [{"key": HOLDOUT_VARIANT}, {"key": GENERAL_VARIANT}],
    }
    return {"defaultValue": None, "rules": [rule]}


def _holdout_filter(holdout: Holdout) -> Json:
    return {"attribute": "id", "seed": holdout.seed, "hashVersion": 2, "ranges": [[holdout.coverage, 1.0]]}


def _namespace_filter(layer: str, start: float, end: float) -> Json:
    return {"attribute": "id", "seed": "__" + layer, "hashVersion": 1, "ranges": [[start, end]]}


def _value(experiment: str, variant: str, params: Mapping[str, object]) -> Json:
    """A variation's value: what a backend reads from the feature."""
    return {"experiment": experiment, "variant": variant, "params": dict(params)}


def _force_rules(exp: Experiment) -> list[Json]:
    rules: list[Json] = []
    for variant in exp.variants:
        users = [user for user, key in exp.overrides.items() if key == variant.key]
        if users:
            rules.append(
                {
                    "id": f"{exp.key}:overrides:{variant.key}",
                    "condition": {"surface": exp.surface.value, "id": {"$in": users}},
                    "force": _value(exp.key, variant.key, dict(variant.params.items())),
                }
            )
    return rules


def _experiment_rule(exp: Experiment, excluded: Sequence[str], holdout: Holdout | None) -> Json:
    condition: Json = {"surface": exp.surface.value}
    if excluded:
        condition["id"] = {"$nin": list(excluded)}
    rule: Json = {
        "key": exp.key,
        "name": exp.key,
        "seed": exp.seed,
        "hashAttribute": "id",
        "hashVersion": exp.hash_version,
        "coverage": exp.coverage,
        "weights": list(exp.weights),
        "variations": [_value(exp.key, v.key, dict(v.params.items())) for v in exp.variants],
        "meta": [{"key": v.key} for v in exp.variants],
        "condition": condition,
    }
    filters: list[Json] = []
    if holdout is not None:
        filters.append(_holdout_filter(holdout))
    if exp.namespace is not None:
        layer, start, end = exp.namespace
        rule["namespace"] = [layer, start, end]
        if filters:
            filters.append(_namespace_filter(layer, start, end))
    if filters:
        rule["filters"] = filters
    return rule


def _schedule(exp: Experiment) -> Json:
    schedule: Json = {}
    if exp.start is not None:
        schedule["start"] = exp.start.isoformat()
    if exp.stop is not None:
        schedule["stop"] = exp.stop.isoformat()
    return schedule


def _definition(exp: Experiment, *, overrides: bool) -> Json:
    """``exp`` as an experiments YAML mapping (plus ``layer``); ``overrides`` only when asked."""
    doc: Json = {} if exp.layer is None else {"layer": exp.layer}
    doc.update(
        key=exp.key,
        surface=exp.surface.value,
        seed=exp.seed,
        hash_version=exp.hash_version,
        coverage=exp.coverage,
        status=exp.status.value,
    )
    doc.update(_schedule(exp))
    if exp.range is not None:
        doc["range"] = list(exp.range)
    if overrides and exp.overrides:
        doc["overrides"] = dict(exp.overrides)
    doc["variants"] = [{"key": v.key, "weight": v.weight, "params": dict(v.params.items())} for v in exp.variants]
    return doc


def _differences(exp: Experiment, layer: str | None, now: dt.datetime, *, forced: bool) -> list[str]:
    """What of ``exp`` the payload states differently from Encore (empty when nothing)."""
    name = f"experiment {exp.key!r}"
    at = now.isoformat()
    out: list[str] = []
    if exp.status is not ExperimentStatus.RUNNING:
        out.append(
            f"{name}: status {exp.status.value} has no GrowthBook equivalent; it has no experiment rule (assigns "
            "no one by hashing) and its definition is in encore.inactive"
        )
    elif exp.start is not None and now < exp.start:
        out.append(
            f"{name}: starts at {exp.start.isoformat()}; GrowthBook rules have no schedule: no experiment rule in "
            f"this payload (the state at {at}; definition in encore.inactive): re-export then"
        )
    elif exp.stop is not None and now >= exp.stop:
        out.append(
            f"{name}: stopped at {exp.stop.isoformat()} (its stop); no experiment rule (definition in encore.inactive)"
        )
    elif exp.stop is not None:
        out.append(
            f"{name}: stops at {exp.stop.isoformat()}; GrowthBook rules have no schedule (encore.schedules): the "
            f"payload keeps assigning as at {at}: re-export then"
        )
    if forced:
        text = (
            f"{name}: its overrides are force rules, first in feature {exp.key!r} (GrowthBook source 'force', not "
            "tracked: Encore's exposed=False); GrowthBook keeps forcing until the payload changes, Encore stops when "
            "the experiment is stopped or reaches its stop: re-export then"
        )
        if layer is not None:
            text += (
                f"; Encore removes forced users from the rest of layer {layer!r}: the payload does so with the "
                "condition id $nin on the layer's other experiment rules (keep it when editing)"
            )
        out.append(text)
    return out


# --- import ------------------------------------------------------------------------------


def import_payload(payload: Mapping[str, object], source: str = "growthbook payload") -> Json:
    """The experiments YAML document of a payload ``export_payload`` wrote (or one of the same form).

    Raises ``ExperimentConfigError`` naming the field (``<source>: features.<key>.rules[i].<field>``)
    of the first construct Encore cannot represent, or listing what the resulting document fails.
    """
    try:
        document = _Importer().run(payload)
    except ExperimentConfigError as exc:
        raise ExperimentConfigError([f"{source}: {problem}" for problem in exc.problems]) from None
    parse_experiments(document, source)  # raises ExperimentConfigError listing every problem
    return document


def _fail(where: str, message: str) -> ExperimentConfigError:
    return ExperimentConfigError([f"{where}: {message}"])


def _mapping(where: str, value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(where, f"must be a mapping, got {type(value).__name__}")
    return value


def _list(where: str, value: object) -> list[object]:
    if not isinstance(value, list):
        raise _fail(where, f"must be a list, got {type(value).__name__}")
    return value


def _number(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"must be a number, got {value!r}")
    return float(value)


def _string(where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, f"must be a non-empty string, got {value!r}")
    return value


def _strings(where: str, value: object) -> list[str]:
    return [_string(f"{where}[{i}]", v) for i, v in enumerate(_list(where, value))]


def _only(where: str, raw: Mapping[str, object], allowed: frozenset[str], what: str) -> None:
    for key in raw:
        if key not in allowed:
            raise _fail(f"{where}.{key}", f"not supported in {what} (Encore cannot represent it)")


class _Importer:
    """One import: the holdout, then every feature in order, then the layer exclusions."""

    def __init__(self) -> None:
        self._holdout: Holdout | None = None
        self._layers: dict[str, Json] = {}  # layer key -> YAML layer mapping, first-appearance order
        self._experiments: list[Json] = []
        self._forced: dict[str, tuple[str | None, list[str]]] = {}  # experiment -> (its layer, forced users)
        self._hashed: dict[str, tuple[str, str | None, set[str]]] = {}  # experiment rule -> (where, layer, $nin)

    def run(self, payload: Mapping[str, object]) -> Json:
        payload = _mapping("payload", payload)
        _only("payload", payload, _TOP_KEYS, "a payload")
        features = _mapping("features", payload.get("features"))
        encore = _mapping("encore", payload.get("encore", {}))
        _only("encore", encore, _ENCORE_KEYS, "the encore section")
        if encore and encore.get("schema") != SCHEMA:
            raise _fail("encore.schema", f"must be {SCHEMA}, got {encore.get('schema')!r}")
        holdout_key = encore.get("holdout")
        if holdout_key is not None:
            key = _string("encore.holdout", holdout_key)
            self._holdout = self._read_holdout(f"features.{key}", features.get(key))
        schedules = _mapping("encore.schedules", encore.get("schedules", {}))
        inactive = dict(_mapping("encore.inactive", encore.get("inactive", {})))
        for key, raw in features.items():
            if key != holdout_key:
                self._feature(key, raw, schedules, inactive)
        for key in inactive:
            raise _fail(f"encore.inactive.{key}", "has no feature of that key")
        for key in schedules:
            if key not in self._hashed:
                raise _fail(f"encore.schedules.{key}", "names no experiment with an experiment rule")
        self._check_exclusions()
        return self._document()

    def _document(self) -> Json:
        document: Json = {}
        if self._holdout is not None:
            h = self._holdout
            document["holdout"] = {"key": h.key, "seed": h.seed, "coverage": h.coverage}
        if self._layers:
            document["layers"] = list(self._layers.values())
        if self._experiments:
            document["experiments"] = self._experiments
        return document

    def _read_holdout(self, where: str, raw: object) -> Holdout:
        feature = self._feature_rules(where, raw)
        if len(feature) != 1:
            raise _fail(f"{where}.rules", f"the holdout feature must have exactly one rule, got {len(feature)}")
        rwhere = f"{where}.rules[0]"
        rule = _mapping(rwhere, feature[0])
        _only(rwhere, rule, _HOLDOUT_RULE_KEYS, "the holdout rule")
        key = where.removeprefix("features.")
        if rule.get("key", key) != key:
            raise _fail(f"{rwhere}.key", f"must be the feature key {key!r}, got {rule.get('key')!r}")
        self._check_hashing(rwhere, rule)
        if rule.get("hashVersion") != 2:
            raise _fail(f"{rwhere}.hashVersion", f"must be 2 for the holdout, got {rule.get('hashVersion')!r}")
        if _number(f"{rwhere}.coverage", rule.get("coverage", 1.0)) != 1.0:
            raise _fail(f"{rwhere}.coverage", "must be 1 for the holdout (its weights set its size)")
        if rule.get("variations") != [HOLDOUT_VARIANT, GENERAL_VARIANT]:
            raise _fail(f"{rwhere}.variations", f"must be {[HOLDOUT_VARIANT, GENERAL_VARIANT]}")
        weights = [
            _number(f"{rwhere}.weights[{i}]", w) for i, w in enumerate(_list(f"{rwhere}.weights", rule.get("weights")))
        ]
        if len(weights) != 2 or abs(weights[0] + weights[1] - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise _fail(f"{rwhere}.weights", f"must be [coverage, 1 - coverage], got {weights}")
        seed = _string(f"{rwhere}.seed", rule.get("seed", key))
        return Holdout(coverage=weights[0], key=key, seed=seed)

    def _feature_rules(self, where: str, raw: object) -> list[object]:
        feature = _mapping(where, raw)
        _only(where, feature, frozenset({"defaultValue", "rules"}), "a feature")
        if feature.get("defaultValue") is not None:
            raise _fail(f"{where}.defaultValue", "must be null (a user in no variant gets nothing)")
        return _list(f"{where}.rules", feature.get("rules", []))

    def _check_hashing(self, where: str, rule: Mapping[str, object]) -> None:
        if rule.get("hashAttribute", "id") != "id":
            raise _fail(
                f"{where}.hashAttribute", f"must be 'id' (Encore hashes the user id), got {rule['hashAttribute']!r}"
            )
        for key in ("id", "name", "phase"):
            if key in rule and not isinstance(rule[key], str):
                raise _fail(f"{where}.{key}", f"must be a string, got {rule[key]!r}")

    def _feature(self, key: str, raw: object, schedules: Mapping[str, object], inactive: dict[str, object]) -> None:
        where = f"features.{key}"
        rules = [_mapping(f"{where}.rules[{i}]", r) for i, r in enumerate(self._feature_rules(where, raw))]
        forcing = [(i, r) for i, r in enumerate(rules) if "force" in r]
        hashing = [(i, r) for i, r in enumerate(rules) if "force" not in r]
        for i, rule in forcing:
            _only(f"{where}.rules[{i}]", rule, _FORCE_RULE_KEYS, "a force rule")
        if len(hashing) > 1:
            raise _fail(f"{where}.rules[{hashing[1][0]}]", "a feature holds at most one experiment rule")
        if hashing and hashing[0][0] != len(rules) - 1:
            raise _fail(f"{where}.rules[{hashing[0][0]}]", "the experiment rule must come after every force rule")
        if hashing:
            if key in inactive:
                raise _fail(f"encore.inactive.{key}", "an experiment with an experiment rule cannot be inactive")
            exp = self._experiment_rule(f"{where}.rules[{hashing[0][0]}]", key, hashing[0][1])
            exp.update(_schedule_of(f"encore.schedules.{key}", schedules.get(key, {})))
        else:
            if key not in inactive:
                raise _fail(where, "has no experiment rule and no definition in encore.inactive")
            exp = dict(_mapping(f"encore.inactive.{key}", inactive.pop(key)))
            if exp.get("key") != key:
                raise _fail(f"encore.inactive.{key}.key", f"must be {key!r}, got {exp.get('key')!r}")
        layer = exp.pop("layer", None)
        if layer is not None and not isinstance(layer, str):
            raise _fail(f"encore.inactive.{key}.layer", f"must be a layer key, got {layer!r}")
        if forcing:
            if "overrides" in exp:
                raise _fail(f"encore.inactive.{key}.overrides", "overrides are already force rules of the feature")
            overrides = self._overrides(where, exp, forcing)
            exp["overrides"] = overrides
            self._forced[key] = (layer, list(overrides))
        self._add(exp, layer)

    def _add(self, exp: Json, layer: str | None) -> None:
        if layer is None:
            self._experiments.append(exp)
            return
        entry = self._layers.setdefault(layer, {"key": layer, "surface": exp.get("surface"), "experiments": []})
        _json_list(entry["experiments"]).append(exp)

    def _experiment_rule(self, where: str, key: str, rule: Mapping[str, object]) -> Json:
        _only(where, rule, _EXPERIMENT_RULE_KEYS, "an experiment rule")
        if rule.get("key", key) != key:
            raise _fail(f"{where}.key", f"must be the feature key {key!r}, got {rule.get('key')!r}")
        self._check_hashing(where, rule)
        hash_version = rule.get("hashVersion", 1)  # GrowthBook's default
        if hash_version not in (1, 2) or isinstance(hash_version, bool):
            raise _fail(f"{where}.hashVersion", f"must be 1 or 2, got {hash_version!r}")
        variations = _list(f"{where}.variations", rule.get("variations"))
        variants = [self._variation(f"{where}.variations[{i}]", key, v) for i, v in enumerate(variations)]
        self._check_meta(f"{where}.meta", rule.get("meta"), variants)
        weights = self._weights(f"{where}.weights", rule.get("weights"), len(variants))
        condition = _mapping(f"{where}.condition", rule.get("condition"))
        _only(f"{where}.condition", condition, frozenset({"surface", "id"}), "an experiment rule's condition")
        surface = _string(f"{where}.condition.surface", condition.get("surface"))
        exp: Json = {
            "key": key,
            "surface": surface,
            "seed": _string(f"{where}.seed", rule.get("seed", key)),
            "hash_version": hash_version,
            "coverage": _number(f"{where}.coverage", rule.get("coverage", 1.0)),
            "status": ExperimentStatus.RUNNING.value,
        }
        layer = self._namespace(where, rule)
        if layer is not None:
            exp["layer"], exp["range"] = layer[0], [layer[1], layer[2]]
        users: set[str] = set()
        if "id" in condition:
            excluded = _mapping(f"{where}.condition.id", condition["id"])
            _only(f"{where}.condition.id", excluded, frozenset({"$nin"}), "an experiment rule's id condition")
            users = set(_strings(f"{where}.condition.id.$nin", excluded.get("$nin")))
        self._hashed[key] = (f"{where}.condition.id.$nin", None if layer is None else layer[0], users)
        exp["variants"] = [
            {"key": vkey, "weight": w, "params": params} for (vkey, params), w in zip(variants, weights, strict=True)
        ]
        return exp

    def _variation(self, where: str, key: str, raw: object) -> tuple[str, Json]:
        value = _mapping(where, raw)
        _only(where, value, frozenset({"experiment", "variant", "params"}), "a variation value")
        if value.get("experiment") != key:
            raise _fail(f"{where}.experiment", f"must be the feature key {key!r}, got {value.get('experiment')!r}")
        return _string(f"{where}.variant", value.get("variant")), dict(
            _mapping(f"{where}.params", value.get("params", {}))
        )

    def _check_meta(self, where: str, raw: object, variants: Sequence[tuple[str, Json]]) -> None:
        if raw is None:
            return
        meta = _list(where, raw)
        if len(meta) != len(variants):
            raise _fail(where, f"must have one entry per variation ({len(variants)}), got {len(meta)}")
        for i, (entry, (vkey, _)) in enumerate(zip(meta, variants, strict=True)):
            m = _mapping(f"{where}[{i}]", entry)
            _only(f"{where}[{i}]", m, frozenset({"key", "name"}), "variation meta")
            if m.get("key", vkey) != vkey:
                raise _fail(f"{where}[{i}].key", f"must be the variation's variant {vkey!r}, got {m.get('key')!r}")

    def _weights(self, where: str, raw: object, count: int) -> list[float]:
        if raw is None:
            return [1.0 / count] * count if count else []
        weights = [_number(f"{where}[{i}]", w) for i, w in enumerate(_list(where, raw))]
        if len(weights) != count:
            raise _fail(where, f"must have one weight per variation ({count}), got {len(weights)}")
        if abs(math.fsum(weights) - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise _fail(where, f"must sum to 1 (GrowthBook would use them unnormalised), got {math.fsum(weights):.6g}")
        return weights

    def _namespace(self, where: str, rule: Mapping[str, object]) -> tuple[str, float, float] | None:
        """The layer range from ``namespace`` and/or the namespace filter; checks the holdout filter."""
        namespace = None
        if "namespace" in rule:
            namespace = self._legacy_namespace(f"{where}.namespace", rule["namespace"])
        filters = [
            _mapping(f"{where}.filters[{i}]", f)
            for i, f in enumerate(_list(f"{where}.filters", rule.get("filters", [])))
        ]
        holdout_seen = False
        for i, raw in enumerate(filters):
            fwhere = f"{where}.filters[{i}]"
            _only(fwhere, raw, frozenset({"attribute", "seed", "hashVersion", "ranges"}), "a filter")
            if raw.get("attribute", "id") != "id":
                raise _fail(f"{fwhere}.attribute", f"must be 'id', got {raw.get('attribute')!r}")
            h = self._holdout
            if h is not None and not holdout_seen and raw.get("seed") == h.seed:
                if raw.get("hashVersion", 2) != 2 or raw.get("ranges") != [[h.coverage, 1.0]]:
                    raise _fail(fwhere, f"the holdout filter must be hash v2 with ranges [[{h.coverage}, 1.0]]")
                holdout_seen = True
                continue
            found = self._namespace_filter(fwhere, raw)
            if namespace is not None and found != namespace:
                raise _fail(fwhere, f"disagrees with the namespace {list(namespace)} (SDKs use the filter)")
            namespace = found
        if self._holdout is not None and not holdout_seen:
            raise _fail(f"{where}.filters", f"must hold the filter of holdout {self._holdout.key!r}")
        return namespace

    def _legacy_namespace(self, where: str, raw: object) -> tuple[str, float, float]:
        items = _list(where, raw)
        if len(items) != 3:
            raise _fail(where, f"must be [layer, start, end], got {items!r}")
        return _string(f"{where}[0]", items[0]), _number(f"{where}[1]", items[1]), _number(f"{where}[2]", items[2])

    def _namespace_filter(self, where: str, raw: Mapping[str, object]) -> tuple[str, float, float]:
        seed = raw.get("seed")
        if not isinstance(seed, str) or not seed.startswith("__") or raw.get("hashVersion", 2) != 1:
            raise _fail(
                where,
                "only the holdout filter and legacy namespace filters (seed '__' + layer, hashVersion 1) are "
                "supported, not range-based namespaces or other filters",
            )
        ranges = _list(f"{where}.ranges", raw.get("ranges"))
        if len(ranges) != 1:
            raise _fail(f"{where}.ranges", f"a layer owns one range, got {len(ranges)}")
        bounds = _list(f"{where}.ranges[0]", ranges[0])
        if len(bounds) != 2:
            raise _fail(f"{where}.ranges[0]", f"must be [start, end], got {bounds!r}")
        return seed[2:], _number(f"{where}.ranges[0][0]", bounds[0]), _number(f"{where}.ranges[0][1]", bounds[1])

    def _overrides(self, where: str, exp: Json, forcing: list[tuple[int, Mapping[str, object]]]) -> dict[str, str]:
        variants = {v["key"]: v for v in _json_list(exp.get("variants", [])) if isinstance(v, dict)}
        overrides: dict[str, str] = {}
        for i, rule in forcing:
            rwhere = f"{where}.rules[{i}]"
            self._check_hashing(rwhere, rule)
            condition = _mapping(f"{rwhere}.condition", rule.get("condition"))
            _only(f"{rwhere}.condition", condition, frozenset({"surface", "id"}), "a force rule's condition")
            if condition.get("surface") != exp.get("surface"):
                raise _fail(f"{rwhere}.condition.surface", f"must be the experiment's surface {exp.get('surface')!r}")
            ids = _mapping(f"{rwhere}.condition.id", condition.get("id"))
            _only(f"{rwhere}.condition.id", ids, frozenset({"$in"}), "a force rule's id condition")
            users = _strings(f"{rwhere}.condition.id.$in", ids.get("$in"))
            value = _mapping(f"{rwhere}.force", rule.get("force"))
            variant = variants.get(value.get("variant"))
            if variant is None:
                raise _fail(f"{rwhere}.force.variant", f"names no variant of {exp['key']!r}: {value.get('variant')!r}")
            if dict(value) != _value(str(exp["key"]), str(variant["key"]), _mapping("params", variant["params"])):
                raise _fail(f"{rwhere}.force", "must equal the variant's value (experiment, variant, params)")
            for user in users:
                if user in overrides:
                    raise _fail(f"{rwhere}.condition.id.$in", f"user {user!r} is forced twice")
                overrides[user] = str(variant["key"])
        return overrides

    def _check_exclusions(self) -> None:
        """Each hashed rule's ``$nin`` must be exactly the users forced into the other experiments of its layer."""
        for key, (where, layer, found) in self._hashed.items():
            expected = {
                user
                for other, (other_layer, users) in self._forced.items()
                if other != key and layer is not None and other_layer == layer
                for user in users
            }
            if found != expected:
                raise _fail(
                    where,
                    f"must exclude exactly the users forced into the other experiments of its layer ({layer!r}): "
                    f"missing {sorted(expected - found)}, extra {sorted(found - expected)}",
                )


def _schedule_of(where: str, raw: object) -> Json:
    schedule = _mapping(where, raw)
    _only(where, schedule, frozenset({"start", "stop"}), "a schedule")
    return {k: _string(f"{where}.{k}", v) for k, v in schedule.items()}


def _json_list(value: object) -> list[Json]:
    assert isinstance(value, list)
    return value
