"""GrowthBook interchange: the exported payload, run by the ``growthbook`` SDK, assigns what Encore assigns."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import growthbook  # dev dependency: an independent implementation to cross-check
import pytest
import yaml

import cli.main
from cli import exit_codes
from experimentation.growthbook import export_payload, import_payload
from ranking.types import Surface
from serving.experiments.assignment import Assigner
from serving.experiments.config import (
    ExperimentConfigError,
    ExperimentError,
    ExperimentsConfig,
    load_experiments,
    parse_experiments,
)

NOW = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC)


_VALUES: dict[str, list[Any]] = {
    "retrieval_size": [100, 150, 200],
    "diversity_cap": [2, 3],
    "seed_weight": [0.5, 0.6],
    "cascade_size": [0, 100],
}


def _variants(*weights: float, param: str = "retrieval_size") -> list[dict[str, Any]]:
    return [{"key": f"v{i}", "weight": w, "params": {param: _VALUES[param][i]}} for i, w in enumerate(weights)]


DOCUMENT: dict[str, Any] = {
    "holdout": {"key": "gh", "seed": "gh-seed", "coverage": 0.1},
    "layers": [
        {
            "key": "home-ranking",
            "surface": "home",
            "experiments": [
                {
                    "key": "lay-a",
                    "hash_version": 2,
                    "coverage": 0.9,
                    "status": "running",
                    "range": [0.0, 0.4],
                    "overrides": {"qa-1": "v1", "ユーザー-forced": "v0"},
                    "variants": _variants(0.4, 0.6, param="diversity_cap"),
                },
                {
                    "key": "lay-b",
                    "hash_version": 1,
                    "coverage": 1.0,
                    "status": "running",
                    "range": [0.5, 0.9],
                    "start": "2026-11-01T00:00:00+00:00",
                    "stop": "2026-12-01T00:00:00+00:00",
                    "variants": _variants(0.5, 0.5, param="diversity_cap"),
                },
                {  # a draft: no hashing, but its overrides force (and remove the user from lay-a and lay-b)
                    "key": "lay-draft",
                    "coverage": 1.0,
                    "status": "draft",
                    "range": [0.9, 1.0],
                    "overrides": {"qa-2": "v1"},
                    "variants": _variants(0.5, 0.5, param="diversity_cap"),
                },
            ],
        }
    ],
    "experiments": [
        {  # 2 arms, hash v1, unequal weights, coverage < 1; sets retrieval_size, as does three-arm (a conflict)
            "key": "two-arm",
            "surface": "home",
            "seed": "two-seed",
            "hash_version": 1,
            "coverage": 0.8,
            "status": "running",
            "overrides": {"qa-1": "v0"},
            "variants": _variants(0.3, 0.7),
        },
        {  # 3 arms, hash v2, unequal weights, coverage < 1
            "key": "three-arm",
            "surface": "home",
            "coverage": 0.6,
            "status": "running",
            "variants": _variants(0.5, 0.3, 0.2),
        },
        {
            "key": "np-exp",
            "surface": "now_playing",
            "coverage": 0.7,
            "status": "running",
            "variants": _variants(0.25, 0.75, param="seed_weight"),
        },
        {  # stopped: forces no one, hashes no one
            "key": "stopped-exp",
            "surface": "home",
            "coverage": 1.0,
            "status": "stopped",
            "overrides": {"qa-3": "v1"},
            "variants": _variants(0.5, 0.5, param="cascade_size"),
        },
        {  # running, but starts after NOW
            "key": "future-exp",
            "surface": "now_playing",
            "coverage": 1.0,
            "status": "running",
            "start": "2026-12-01T00:00:00+00:00",
            "overrides": {"qa-3": "v0"},
            "variants": _variants(0.5, 0.5, param="cascade_size"),
        },
    ],
}

FORCED = ["qa-1", "qa-2", "qa-3", "ユーザー-forced"]
IDS = (
    [f"user-{i}" for i in range(600)]
    + [f"ユーザー-{i}" for i in range(200)]
    + [f"josé-{i}" for i in range(100)]
    + [f"🎧-{i}" for i in range(100)]  # astral: a surrogate pair in UTF-16
    + [f"Ωμέγα{i}€" for i in range(100)]
    + ["ユーザー-17", "josé", "🎧🎶", "", *FORCED]
)


def _config() -> ExperimentsConfig:
    return parse_experiments(copy.deepcopy(DOCUMENT), "test")


def _growthbook_view(gb: growthbook.GrowthBook, keys: list[str]) -> tuple[dict[str, tuple[str, bool]], dict[str, Any]]:
    """(experiment -> (variant, exposed)), params merged in feature order (the first wins)."""
    assigned: dict[str, tuple[str, bool]] = {}
    params: dict[str, Any] = {}
    for key in keys:
        result = gb.eval_feature(key)
        if result.value is None:
            continue
        exposed = result.source == "experiment"
        assert exposed or result.source == "force", (key, result.source)
        if isinstance(result.value, str):  # the holdout feature
            assigned[key] = (result.value, exposed)
            continue
        assigned[key] = (result.value["variant"], exposed)
        for name, value in result.value["params"].items():
            params.setdefault(name, value)
    return assigned, params


def _compare(config: ExperimentsConfig, payload: dict[str, Any]) -> int:
    """Compare Encore and the SDK for every id and surface; return how many (id, surface) pairs agree."""
    features = json.loads(json.dumps(payload["features"]))  # what a backend receives
    keys = list(features)
    assigner = Assigner(config, clock=lambda: NOW)
    gb = growthbook.GrowthBook(features=features)
    compared = 0
    for uid in IDS:
        for surface in Surface:
            gb.set_attributes({"id": uid, "surface": surface.value})
            ours = assigner.assign(uid, surface)
            expected = {a.experiment: (a.variant, a.exposed) for a in ours.assignments}
            got, params = _growthbook_view(gb, keys)
            assert got == expected, (uid, surface)
            assert params == dict(ours.overrides), (uid, surface)
            compared += 1
    gb.destroy()
    return compared


def test_growthbook_sdk_assigns_exactly_what_encore_assigns() -> None:
    config = _config()
    payload = export_payload(config, NOW)
    assert _compare(config, payload) == len(IDS) * len(Surface)
    assert len(IDS) >= 1000


def test_the_comparison_covers_every_case() -> None:
    """The ids reach each experiment, the holdout, every override path and both hash versions."""
    assigner = Assigner(_config(), clock=lambda: NOW)
    seen: set[tuple[str, str, bool]] = set()
    for uid in IDS:
        for surface in Surface:
            seen.update((a.experiment, a.variant, a.exposed) for a in assigner.assign(uid, surface).assignments)
    for exp, arms in {"two-arm": 2, "three-arm": 3, "lay-a": 2, "lay-b": 2, "np-exp": 2}.items():
        assert {(exp, f"v{i}", True) for i in range(arms)} <= seen, exp
    assert {("gh", "holdout", True), ("gh", "general", True)} <= seen
    assert {("lay-a", "v1", False), ("lay-draft", "v1", False), ("two-arm", "v0", False)} <= seen
    assert ("future-exp", "v0", False) in seen  # overrides ignore start
    assert not any(exp == "stopped-exp" for exp, _, _ in seen)


def test_an_override_removes_the_user_from_the_rest_of_its_layer_in_both() -> None:
    lay_b = export_payload(_config(), NOW)["features"]["lay-b"]["rules"][-1]
    assert sorted(lay_b["condition"]["id"]["$nin"]) == sorted(["qa-1", "ユーザー-forced", "qa-2"])
    ids = [f"forced-{i}" for i in range(2000)]
    doc = copy.deepcopy(DOCUMENT)
    doc["layers"][0]["experiments"][0]["overrides"] = dict.fromkeys(ids, "v0")
    config = parse_experiments(doc, "test")
    exact = export_payload(config, NOW)["features"]
    stripped = copy.deepcopy(exact)
    del stripped["lay-b"]["rules"][-1]["condition"]["id"]  # without the exclusion
    assigner = Assigner(config, clock=lambda: NOW)
    in_lay_b = {"exact": 0, "stripped": 0, "encore": 0}
    for name, features in (("exact", exact), ("stripped", stripped)):
        gb = growthbook.GrowthBook(features=features)
        for uid in ids:
            gb.set_attributes({"id": uid, "surface": "home"})
            in_lay_b[name] += gb.eval_feature("lay-b").value is not None
        gb.destroy()
    for uid in ids:
        in_lay_b["encore"] += any(a.experiment == "lay-b" for a in assigner.assign(uid, Surface.HOME).assignments)
    assert in_lay_b["exact"] == in_lay_b["encore"] == 0
    assert in_lay_b["stripped"] > 400  # ~ 2000 * 0.9 (not held out) * 0.4 (lay-b's range)


def test_a_stopped_or_not_yet_started_experiment_has_no_experiment_rule() -> None:
    features = export_payload(_config(), NOW)["features"]
    assert features["stopped-exp"]["rules"] == []  # a stopped experiment forces no one
    assert [("force" in r) for r in features["future-exp"]["rules"]] == [True]
    assert [("force" in r) for r in features["lay-draft"]["rules"]] == [True]
    after_stop = export_payload(_config(), dt.datetime(2026, 12, 2, tzinfo=dt.UTC))["features"]
    assert [("force" in r) for r in after_stop["lay-b"]["rules"]] == []
    assert [("force" in r) for r in after_stop["future-exp"]["rules"]] == [True, False]  # started


def test_rules_carry_growthbook_fields_and_the_hash_version_of_each_experiment() -> None:
    payload = export_payload(_config(), NOW)
    features = payload["features"]
    two = features["two-arm"]["rules"][-1]
    assert (two["key"], two["seed"], two["hashVersion"], two["coverage"]) == ("two-arm", "two-seed", 1, 0.8)
    assert two["weights"] == [0.3, 0.7] and two["hashAttribute"] == "id"
    assert two["variations"][1] == {"experiment": "two-arm", "variant": "v1", "params": {"retrieval_size": 150}}
    assert two["filters"] == [{"attribute": "id", "seed": "gh-seed", "hashVersion": 2, "ranges": [[0.1, 1.0]]}]
    assert features["three-arm"]["rules"][-1]["hashVersion"] == 2
    lay_a = features["lay-a"]["rules"][-1]
    assert lay_a["namespace"] == ["home-ranking", 0.0, 0.4]
    assert lay_a["filters"][1] == {
        "attribute": "id",
        "seed": "__home-ranking",
        "hashVersion": 1,
        "ranges": [[0.0, 0.4]],
    }
    holdout = features["gh"]["rules"][0]
    assert (holdout["variations"], holdout["weights"], holdout["seed"]) == (
        ["holdout", "general"],
        [0.1, 0.9],
        "gh-seed",
    )
    layered = ["lay-a", "lay-b", "lay-draft"]
    assert list(features) == ["gh", *layered, "two-arm", "three-arm", "np-exp", "stopped-exp", "future-exp"]
    assert payload["encore"]["schedules"] == {
        "lay-b": {"start": "2026-11-01T00:00:00+00:00", "stop": "2026-12-01T00:00:00+00:00"}
    }


def test_without_a_holdout_layers_are_plain_legacy_namespaces() -> None:
    doc = copy.deepcopy(DOCUMENT)
    del doc["holdout"]
    config = parse_experiments(doc, "test")
    payload = export_payload(config, NOW)
    lay_a = payload["features"]["lay-a"]["rules"][-1]
    assert "filters" not in lay_a and lay_a["namespace"] == ["home-ranking", 0.0, 0.4]
    assert payload["encore"]["holdout"] is None
    assert _compare(config, payload) == len(IDS) * len(Surface)


def test_unsupported_names_each_difference_and_its_experiment() -> None:
    unsupported = export_payload(_config(), NOW)["encore"]["unsupported"]
    text = "\n".join(unsupported)

    def line(*parts: str) -> str:
        found = [u for u in unsupported if all(p in u for p in parts)]
        assert len(found) == 1, (parts, text)
        return found[0]

    assert "$nin" in line("'lay-a'", "overrides", "layer 'home-ranking'")
    assert "re-export" in line("'two-arm'", "overrides")
    assert "re-export then" in line("'lay-b'", "stops at 2026-12-01", "no schedule")
    line("'lay-draft'", "status draft")
    line("'stopped-exp'", "status stopped")
    line("'future-exp'", "starts at 2026-12-01", "no experiment rule")
    line("holdout 'gh'", "built-in holdout")
    assert "'two-arm'" in line("param 'retrieval_size'", "'three-arm'")
    assert not [u for u in unsupported if "'np-exp'" in u]  # nothing differs for it


def _equivalent(a: ExperimentsConfig, b: ExperimentsConfig) -> bool:
    return (a.holdout, a.layers, a.experiments) == (b.holdout, b.layers, b.experiments)


def test_export_import_export_round_trips() -> None:
    config = _config()
    payload = json.loads(json.dumps(export_payload(config, NOW)))
    document = import_payload(payload)
    again = parse_experiments(json.loads(json.dumps(document)), "again")
    assert _equivalent(config, again)
    assert export_payload(again, NOW) == payload


def test_import_of_a_plain_growthbook_feature_is_a_running_experiment() -> None:
    rule = {
        "key": "plain",
        "variations": [{"experiment": "plain", "variant": "a"}, {"experiment": "plain", "variant": "b"}],
        "condition": {"surface": "home"},
    }
    document = import_payload({"features": {"plain": {"defaultValue": None, "rules": [rule]}}})
    (exp,) = parse_experiments(document, "t").experiments
    # GrowthBook's defaults: hash version 1, seed = key, coverage 1, equal weights.
    assert (exp.key, exp.hash_version, exp.seed, exp.coverage, exp.weights) == ("plain", 1, "plain", 1.0, (0.5, 0.5))


def _payload_with(path: list[str | int], value: object, delete: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(json.dumps(export_payload(_config(), NOW)))
    target: Any = payload
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (
            ["features", "two-arm", "rules", 1, "parentConditions"],
            [{"id": "x"}],
            "features.two-arm.rules[1].parentConditions",
        ),
        (
            ["features", "three-arm", "rules", 0, "hashAttribute"],
            "deviceId",
            "features.three-arm.rules[0].hashAttribute",
        ),
        (["features", "three-arm", "rules", 0, "ranges"], [[0, 0.1]], "features.three-arm.rules[0].ranges"),
        (["features", "three-arm", "rules", 0, "hashVersion"], 3, "features.three-arm.rules[0].hashVersion"),
        (["features", "three-arm", "rules", 0, "weights"], [0.5, 0.3, 0.195], "features.three-arm.rules[0].weights"),
        (
            ["features", "three-arm", "rules", 0, "condition", "country"],
            "FR",
            "features.three-arm.rules[0].condition.country",
        ),
        (["features", "three-arm", "defaultValue"], {"x": 1}, "features.three-arm.defaultValue"),
        (
            ["features", "lay-b", "rules", 0, "filters", 1],
            {"seed": "home-ranking", "ranges": [[0.5, 0.9]]},  # a range-based (v2) namespace
            "features.lay-b.rules[0].filters[1]",
        ),
        (
            ["features", "lay-b", "rules", 0, "condition", "id", "$nin"],
            ["qa-1"],
            "features.lay-b.rules[0].condition.id.$nin",
        ),
        (["features", "lay-a", "rules", 0, "force", "params"], {"diversity_cap": 7}, "features.lay-a.rules[0].force"),
        (["features", "three-arm", "rules", 0, "filters"], [], "features.three-arm.rules[0].filters"),
        (["encore", "schema"], 2, "encore.schema"),
        (["savedGroups"], {"g": []}, "payload.savedGroups"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith(("features", "encore", "payload")) else "",
)
def test_import_rejects_what_encore_cannot_represent_naming_the_field(
    path: list[str | int], value: object, field: str
) -> None:
    with pytest.raises(ExperimentConfigError) as raised:
        import_payload(_payload_with(path, value))
    assert isinstance(raised.value, ExperimentError)
    assert raised.value.problems[0].startswith(f"growthbook payload: {field}:"), raised.value.problems


def test_import_rejects_an_experiment_rule_without_a_surface_condition() -> None:
    with pytest.raises(ExperimentConfigError, match=r"payload: features\.np-exp\.rules\[0\]\.condition:"):
        import_payload(_payload_with(["features", "np-exp", "rules", 0, "condition"], None, delete=True))


def test_import_validates_the_resulting_document() -> None:
    # Overlapping namespace ranges are representable in the payload but not a valid Encore layer.
    payload = _payload_with(["features", "lay-b", "rules", 0, "namespace"], ["home-ranking", 0.3, 0.9])
    payload["features"]["lay-b"]["rules"][0]["filters"][1]["ranges"] = [[0.3, 0.9]]
    with pytest.raises(ExperimentConfigError, match="overlaps"):
        import_payload(payload)


def test_cli_export_then_import_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "experiments.yaml"
    source.write_text(yaml.safe_dump(DOCUMENT, allow_unicode=True), encoding="utf-8")
    payload_path, back = tmp_path / "payload.json", tmp_path / "back.yaml"
    at = ["--at", NOW.isoformat()]
    assert (
        cli.main.main(
            ["experiments", "growthbook-export", "--experiments", str(source), *at, "--out", str(payload_path)]
        )
        == 0
    )
    payload = json.loads(payload_path.read_text(encoding="utf-8"))
    assert payload == json.loads(json.dumps(export_payload(_config(), NOW)))
    assert cli.main.main(["experiments", "growthbook-import", str(payload_path), "--out", str(back)]) == 0
    assert _equivalent(load_experiments(back), _config())
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "payload.json: invalid JSON"),
        ("[]", "payload.json: payload: must be a JSON object"),
        (json.dumps({"features": {"x": {"rules": [{"force": 1, "range": [0, 1]}]}}}), "features.x.rules[0].range:"),
    ],
)
def test_cli_import_of_a_bad_payload_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "payload.json"
    path.write_text(text, encoding="utf-8")
    assert cli.main.main(["experiments", "growthbook-import", str(path)]) == exit_codes.BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("encore experiments growthbook-import: ") and message in err, err


def test_cli_export_needs_exactly_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main.main(["experiments", "growthbook-export"])
    assert exited.value.code == exit_codes.BAD_INPUT
    assert "--experiments" in capsys.readouterr().err
