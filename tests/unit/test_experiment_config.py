"""Experiment config loading and validation: every problem reported, with its location."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import pickle
from pathlib import Path
from typing import Any

import pytest

from ranking.types import TUNABLE_PARAMS, RankingParams, Surface
from serving.experiments.config import (
    Experiment,
    ExperimentConfigError,
    ExperimentError,
    ExperimentsConfig,
    ExperimentStatus,
    Holdout,
    Variant,
    VariantParams,
    load_experiments,
    parse_experiments,
    validate_file,
)

VALID_YAML = """\
experiments:
  - key: home-ranker-lite
    surface: home
    seed: home-ranker-lite-v1
    hash_version: 2
    coverage: 1.0
    status: running
    variants:
      - key: control
        weight: 0.5
        params: {}
      - key: lite
        weight: 0.5
        params: {model_version: lgbm-v1-lite, retrieval_size: 200}
  - key: np-blend
    surface: now_playing
    coverage: 0.2
    status: draft
    variants:
      - {key: control, weight: 0.34}
      - {key: seedy, weight: 0.33, params: {seed_weight: 0.8, diversity_cap: 3}}
      - {key: user, weight: 0.33, params: {seed_weight: 0.2}}
"""


def _variant(key: str, weight: float = 0.5, **params: Any) -> dict[str, Any]:
    return {"key": key, "weight": weight, "params": params}


def _experiment(key: str = "exp-a", **overrides: Any) -> dict[str, Any]:
    exp: dict[str, Any] = {
        "key": key,
        "surface": "home",
        "coverage": 1.0,
        "status": "running",
        "variants": [_variant("control"), _variant("treatment", retrieval_size=300)],
    }
    exp.update(overrides)
    return exp


def _problems(data: object, known_models: list[str] | None = None) -> list[str]:
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiments(data, "experiments.yaml", known_models)
    return info.value.problems


def test_valid_config_loads_into_typed_frozen_objects(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(VALID_YAML, encoding="utf-8")

    config = load_experiments(path, known_models={"lgbm-v1", "lgbm-v1-lite"})

    assert config.source == str(path)
    home, np = config.experiments
    assert home == Experiment(
        key="home-ranker-lite",
        surface="home",
        seed="home-ranker-lite-v1",
        hash_version=2,
        coverage=1.0,
        status=ExperimentStatus.RUNNING,
        variants=(
            Variant("control", 0.5, VariantParams()),
            Variant("lite", 0.5, VariantParams(model_version="lgbm-v1-lite", retrieval_size=200)),
        ),
    )
    assert np.seed == "np-blend"  # defaults to the key
    assert np.hash_version == 2  # default
    assert np.status is ExperimentStatus.DRAFT and not np.is_running
    assert np.variants[1].params == VariantParams(seed_weight=0.8, diversity_cap=3)
    assert isinstance(np.variants[1].params.seed_weight, float)
    assert np.weights == (0.34, 0.33, 0.33)
    assert config.on_surface("now_playing") == (np,)
    assert list(home.variants[1].params.items()) == [
        ("model_version", "lgbm-v1-lite"),
        ("retrieval_size", 200),
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        home.coverage = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "experiments: []\n", "experiments:\n"])
def test_empty_file_or_empty_list_is_a_valid_empty_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_experiments(path).experiments == ()


def test_integer_weights_and_coverage_are_accepted_as_floats() -> None:
    exp = _experiment(coverage=1, variants=[_variant("a", 1), _variant("b", 0)])
    config = parse_experiments({"experiments": [exp]}, "x.yaml")
    assert config.experiments[0].coverage == 1.0
    assert config.experiments[0].weights == (1.0, 0.0)


def test_problem_message_names_file_and_location() -> None:
    data = {
        "experiments": [
            _experiment("exp-a"),
            _experiment("exp-b", variants=[_variant("control", retrieval_size="abc"), _variant("t")]),
        ]
    }
    assert _problems(data) == [
        "experiments.yaml: experiments[1].variants[0].params.retrieval_size: must be an int in 10..5000, got 'abc'"
    ]


def test_every_problem_is_reported_with_its_location() -> None:
    data = {
        "version": 3,
        "experiments": [
            _experiment(
                "exp-a",
                surface="search",
                colour="blue",
                coverage=1.5,
                status="paused",
                hash_version=3,
                variants=[
                    {"key": "control", "weight": 0.5, "extra": 1},
                    _variant("control", 0.4, retrieval_size=5, turbo=True),
                ],
            ),
            _experiment("exp-a", seed="exp-b"),
            _experiment("exp-b"),
            _experiment("Bad Key", variants=[_variant("only", 1.0)]),
            _experiment(
                "exp-c",
                variants=[
                    _variant("a", 0.3, seed_weight=1.2, diversity_cap=0),
                    _variant("b", 0.3, model_version="lgbm-v9", diversity_cap=True),
                ],
            ),
            "not-a-mapping",
            {"key": "exp-d"},
        ],
    }

    problems = _problems(data, known_models=["lgbm-v1"])

    expected = [
        "<root>: unknown key 'version'",
        "experiments[0]: unknown key 'colour'",
        "experiments[0].surface: unknown surface 'search'",
        "experiments[0].hash_version: must be 1 or 2, got 3",
        "experiments[0].coverage: must be a number in 0..1, got 1.5",
        "experiments[0].status: must be one of draft, running, stopped, got 'paused'",
        "experiments[0].variants[0]: unknown key 'extra'",
        "experiments[0].variants[1].params.retrieval_size: must be an int in 10..5000, got 5",
        "experiments[0].variants[1].params: unknown param 'turbo'",
        "experiments[1].key: duplicate experiment key 'exp-a' (first at experiments[0])",
        "experiments[2].seed: duplicate seed 'exp-b' (first at experiments[1])",
        "experiments[3].key: key must be a non-empty string of [a-z0-9-_.], got 'Bad Key'",
        "experiments[3].variants: needs at least 2 variants, got 1",
        "experiments[4].variants[0].params.seed_weight: must be a number in 0..1, got 1.2",
        "experiments[4].variants[0].params.diversity_cap: must be an int in 1..100, got 0",
        "experiments[4].variants[1].params.model_version: unknown model version 'lgbm-v9'",
        "experiments[4].variants[1].params.diversity_cap: must be an int in 1..100, got True",
        "experiments[5]: must be a mapping, got str",
        "experiments[6]: missing required key 'surface'",
        "experiments[6]: missing required key 'coverage'",
        "experiments[6]: missing required key 'status'",
        "experiments[6]: missing required key 'variants'",
    ]
    for fragment in expected:
        matching = [p for p in problems if p.startswith(f"experiments.yaml: {fragment}")]
        assert matching, f"missing problem {fragment!r} in:\n" + "\n".join(problems)
    # The error message lists them all.
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiments(data, "experiments.yaml", ["lgbm-v1"])
    message = str(info.value)
    assert message.startswith(f"{len(problems)} problems in experiment config:")
    assert all(p in message for p in problems)
    assert isinstance(info.value, ExperimentError)


def test_duplicate_variant_keys_are_reported_alongside_other_problems() -> None:
    exp = _experiment(variants=[_variant("control", 0.5), _variant("control", 0.6)])
    assert _problems({"experiments": [exp]}) == [
        "experiments.yaml: experiments[0].variants[1].key: "
        "duplicate variant key 'control' (first at experiments[0].variants[0])",
        "experiments.yaml: experiments[0].variants: weights must sum to 1, got 1.1",
    ]


@pytest.mark.parametrize(
    ("weights", "total"),
    [([0.5, 0.4], "0.9"), ([0.6, 0.5], "1.1"), ([0.3333, 0.3333, 0.3333], "0.9999")],
)
def test_weights_must_sum_to_one(weights: list[float], total: str) -> None:
    exp = _experiment(variants=[_variant(f"v{i}", w) for i, w in enumerate(weights)])
    assert _problems({"experiments": [exp]}) == [
        f"experiments.yaml: experiments[0].variants: weights must sum to 1, got {total}"
    ]


def test_weights_summing_to_one_within_float_error_are_accepted() -> None:
    exp = _experiment(variants=[_variant(f"v{i}", 0.1) for i in range(10)])
    assert len(parse_experiments({"experiments": [exp]}, "x").experiments[0].variants) == 10


def test_negative_weight_is_rejected() -> None:
    exp = _experiment(variants=[_variant("a", 1.5), _variant("b", -0.5)])
    problems = _problems({"experiments": [exp]})
    assert "experiments.yaml: experiments[0].variants[0].weight: must be a number in 0..1, got 1.5" in problems
    assert "experiments.yaml: experiments[0].variants[1].weight: must be a number in 0..1, got -0.5" in problems


def test_seed_defaulting_to_key_collides_with_explicit_seed() -> None:
    data = {"experiments": [_experiment("exp-a", seed="exp-b"), _experiment("exp-b")]}
    assert _problems(data) == [
        "experiments.yaml: experiments[1].seed: duplicate seed 'exp-b' (first at experiments[0])"
    ]


def test_model_versions_are_only_checked_when_known_models_are_given() -> None:
    exp = _experiment(variants=[_variant("a"), _variant("b", model_version="anything")])
    assert parse_experiments({"experiments": [exp]}, "x").experiments[0].key == "exp-a"
    assert _problems({"experiments": [exp]}, known_models=[]) == [
        "experiments.yaml: experiments[0].variants[1].params.model_version: "
        "unknown model version 'anything' (known: none)"
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([1, 2], "<root>: must be a mapping with key 'experiments', got list"),
        ({"experiments": {"a": 1}}, "experiments: must be a list, got dict"),
        ({"experiments": [_experiment(variants=None)]}, "experiments[0].variants: must be a list"),
        ({"experiments": [_experiment(seed="")]}, "experiments[0].seed: must be a non-empty string"),
        ({"experiments": [_experiment(coverage=float("nan"))]}, "experiments[0].coverage: must be"),
        ({"experiments": [_experiment(hash_version=True)]}, "experiments[0].hash_version: must be"),
        (
            {"experiments": [_experiment(variants=[_variant("a"), {"key": "b", "params": [1]}])]},
            "experiments[0].variants[1]: missing required key 'weight'",
        ),
    ],
)
def test_structural_problems_are_located(data: object, problem: str) -> None:
    assert any(p.startswith(f"experiments.yaml: {problem}") for p in _problems(data))


def test_parse_does_not_mutate_its_input() -> None:
    data = {"experiments": [_experiment()]}
    before = copy.deepcopy(data)
    parse_experiments(data, "x")
    assert data == before


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text("experiments: [\n", encoding="utf-8")
    with pytest.raises(ExperimentConfigError) as info:
        load_experiments(path)
    assert info.value.problems[0].startswith(f"{path}: invalid YAML:")


def test_duplicate_yaml_keys_are_rejected_not_silently_collapsed(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(VALID_YAML.replace("weight: 0.5\n", "weight: 0.5\n        weight: 0.9\n", 1))
    with pytest.raises(ExperimentConfigError, match="found duplicate key 'weight'"):
        load_experiments(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ExperimentConfigError, match="cannot read"):
        load_experiments(tmp_path / "nope.yaml")


def test_default_config_is_empty() -> None:
    assert ExperimentsConfig().experiments == ()


# --- holdout, layers, schedules, overrides ------------------------------------------------

LAYERED_YAML = """\
holdout:
  coverage: 0.05
layers:
  - key: home-ranking
    surface: home
    experiments:
      - key: home-ranker-lite
        range: [0.0, 0.5]
        coverage: 1.0
        status: running
        start: 2026-11-01T00:00:00Z
        stop: 2026-12-01
        overrides: {qa-user-1: lite, "42": control}
        variants:
          - {key: control, weight: 0.5}
          - {key: lite, weight: 0.5, params: {model_version: lgbm-v1-lite, shadow_model: lgbm-v2}}
      - key: home-blend
        surface: home
        seed: home-blend-2026
        range: [0.5, 1]
        coverage: 0.5
        status: draft
        start: "2026-11-01T01:00:00+01:00"
        variants:
          - {key: control, weight: 0.25}
          - {key: recent, weight: 0.75, params: {recent_weight: 0.6, seed_weight: 0.4}}
  - key: np-ranking
    surface: now_playing
    experiments: []
experiments:
  - key: np-diversity
    surface: now_playing
    coverage: 1.0
    status: running
    variants:
      - {key: control, weight: 0.5}
      - {key: cap3, weight: 0.5, params: {diversity_cap: 3}}
"""


def _layer(key: str = "home-ranking", *experiments: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    layer: dict[str, Any] = {"key": key, "surface": "home", "experiments": list(experiments)}
    layer.update(overrides)
    return layer


def _layered(key: str, start: float, end: float, **overrides: Any) -> dict[str, Any]:
    exp = _experiment(key, range=[start, end])
    del exp["surface"]
    exp.update(overrides)
    return exp


def test_layered_config_loads_holdout_layers_and_independent_experiments(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(LAYERED_YAML, encoding="utf-8")

    config = load_experiments(path, known_models={"lgbm-v1", "lgbm-v1-lite", "lgbm-v2"})

    assert config.holdout == Holdout(coverage=0.05, key="global-holdout", seed="global-holdout")
    home, np_layer = config.layers
    assert (home.key, home.surface, np_layer.key, np_layer.experiments) == ("home-ranking", "home", "np-ranking", ())
    lite, blend = home.experiments
    assert lite.layer == "home-ranking" and lite.range == (0.0, 0.5) and lite.surface == "home"
    assert lite.namespace == ("home-ranking", 0.0, 0.5)
    assert lite.start == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert lite.stop == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)  # a YAML date is 00:00 UTC
    assert lite.overrides == {"qa-user-1": "lite", "42": "control"}
    assert lite.variants[1].params == VariantParams(model_version="lgbm-v1-lite", shadow_model="lgbm-v2")
    assert blend.seed == "home-blend-2026" and blend.range == (0.5, 1.0)
    assert blend.start == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)  # ISO string with an offset
    assert blend.weights_by_variant == {"control": 0.25, "recent": 0.75}
    assert blend.variants[1].params == VariantParams(seed_weight=0.4, recent_weight=0.6)
    (np_div,) = config.experiments
    assert np_div.layer is None and np_div.range is None and np_div.namespace is None
    assert config.all_experiments == (lite, blend, np_div)
    assert config.layers_on("home") == (home,) and config.on_surface("home") == ()
    assert config.on_surface("now_playing") == (np_div,)


def test_is_active_between_start_inclusive_and_stop_exclusive() -> None:
    exp = parse_experiments(
        {"experiments": [_experiment(start="2026-11-01T00:00:00Z", stop="2026-11-02T00:00:00Z")]}, "x"
    ).experiments[0]
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert not exp.is_active(start - dt.timedelta(microseconds=1))
    assert exp.is_active(start)
    assert exp.is_active(start + dt.timedelta(hours=23))
    assert not exp.is_active(start + dt.timedelta(days=1))
    draft = dataclasses.replace(exp, status=ExperimentStatus.DRAFT)
    assert not draft.is_active(start)


def test_holdout_key_and_seed_are_optional_and_default_to_global_holdout() -> None:
    config = parse_experiments({"holdout": {"coverage": 0.1, "key": "holdout-2026"}}, "x")
    assert config.holdout == Holdout(coverage=0.1, key="holdout-2026", seed="holdout-2026")
    config = parse_experiments({"holdout": {"coverage": 0, "seed": "h-seed"}}, "x")
    assert config.holdout == Holdout(coverage=0.0, key="global-holdout", seed="h-seed")


def test_overlapping_ranges_in_a_layer_name_both_experiments() -> None:
    data = {"layers": [_layer("home-ranking", _layered("a", 0.0, 0.5), _layered("b", 0.4, 0.8), _layered("c", 0.8, 1))]}
    assert _problems(data) == [
        "experiments.yaml: layers[0].experiments[1].range: [0.4, 0.8) of 'b' overlaps [0, 0.5) of 'a' "
        "(at layers[0].experiments[0])"
    ]


def test_overlap_is_reported_even_when_the_experiment_has_other_problems() -> None:
    data = {"layers": [_layer("l", _layered("a", 0.0, 0.6), _layered("b", 0.5, 1.0, coverage=2))]}
    problems = _problems(data)
    assert "experiments.yaml: layers[0].experiments[1].coverage: must be a number in 0..1, got 2" in problems
    assert any(
        p.startswith("experiments.yaml: layers[0].experiments[1].range: [0.5, 1) of 'b' overlaps") for p in problems
    )


def test_touching_ranges_do_not_overlap_and_ranges_in_different_layers_are_independent() -> None:
    data = {
        "layers": [
            _layer("l1", _layered("a", 0.0, 0.5), _layered("b", 0.5, 1.0)),
            _layer("l2", _layered("c", 0.0, 1.0)),
        ]
    }
    assert [len(layer.experiments) for layer in parse_experiments(data, "x").layers] == [2, 1]


@pytest.mark.parametrize(
    ("rng", "shown"),
    [
        ([0.5, 0.5], "[0.5, 0.5]"),
        ([0.6, 0.2], "[0.6, 0.2]"),
        ([-0.1, 0.5], "[-0.1, 0.5]"),
        ([0.5, 1.2], "[0.5, 1.2]"),
        ([0.5], "[0.5]"),
        ("all", "'all'"),
        ([0, True], "[0, True]"),
    ],
)
def test_range_must_be_inside_0_1_with_start_before_end(rng: object, shown: str) -> None:
    exp = _layered("a", 0, 1, range=rng)
    assert _problems({"layers": [_layer("l", exp)]}) == [
        "experiments.yaml: layers[0].experiments[0].range: "
        f"must be [start, end] with 0 <= start < end <= 1, got {shown}"
    ]


def test_layer_problems_are_located() -> None:
    missing_range = _layered("a", 0, 1)
    del missing_range["range"]
    data = {
        "layers": [
            _layer("home-ranking", missing_range, _layered("b", 0.0, 0.5, surface="now_playing")),
            _layer("home-ranking", surface="search", colour="red"),
            {"surface": "home"},
            _layer("Bad Layer"),
            "nope",
        ],
        "experiments": [_experiment("c", range=[0, 1])],
    }
    problems = _problems(data)
    expected = [
        "layers[0].experiments[0]: missing required key 'range'",
        "layers[0].experiments[1].surface: 'now_playing' does not match its layer's surface 'home'",
        "layers[1]: unknown key 'colour'",
        "layers[1].surface: unknown surface 'search'",
        "layers[1].key: duplicate layer key 'home-ranking' (first at layers[0])",
        "layers[2]: missing required key 'key'",
        "layers[2]: missing required key 'experiments'",
        "layers[3].key: layer key must be a non-empty string of [a-z0-9-_.], got 'Bad Layer'",
        "layers[4]: must be a mapping, got str",
        "experiments[0]: unknown key 'range'",
    ]
    for fragment in expected:
        assert any(p.startswith(f"experiments.yaml: {fragment}") for p in problems), (fragment, problems)
    assert len(problems) == len(expected)


def test_experiment_keys_and_seeds_are_unique_across_layers_holdout_and_top_level() -> None:
    data = {
        "holdout": {"coverage": 0.05, "seed": "shared-seed"},
        "layers": [
            _layer("l1", _layered("a", 0, 0.5), _layered("b", 0.5, 1, seed="shared-seed")),
            _layer("l2", _layered("global-holdout", 0, 1)),
        ],
        "experiments": [_experiment("a"), _experiment("d", seed="a")],
    }
    assert _problems(data) == [
        "experiments.yaml: layers[0].experiments[1].seed: duplicate seed 'shared-seed' (first at holdout)",
        "experiments.yaml: layers[1].experiments[0].key: duplicate experiment key 'global-holdout' (first at holdout)",
        "experiments.yaml: experiments[0].key: duplicate experiment key 'a' (first at layers[0].experiments[0])",
        "experiments.yaml: experiments[0].seed: duplicate seed 'a' (first at layers[0].experiments[0])",
        "experiments.yaml: experiments[1].seed: duplicate seed 'a' (first at layers[0].experiments[0])",
    ]


@pytest.mark.parametrize(
    ("holdout", "problem"),
    [
        ({"coverage": 0.6}, "holdout.coverage: must be a number in 0..0.5, got 0.6"),
        ({"coverage": -0.1}, "holdout.coverage: must be a number in 0..0.5, got -0.1"),
        ({"key": "h"}, "holdout: missing required key 'coverage'"),
        ({"coverage": 0.1, "salt": "x"}, "holdout: unknown key 'salt'"),
        ({"coverage": 0.1, "key": "H!"}, "holdout.key: key must be a non-empty string of [a-z0-9-_.], got 'H!'"),
        ({"coverage": 0.1, "seed": ""}, "holdout.seed: must be a non-empty string, got ''"),
        (0.05, "holdout: must be a mapping, got float"),
    ],
)
def test_holdout_problems_are_located(holdout: object, problem: str) -> None:
    assert any(p.startswith(f"experiments.yaml: {problem}") for p in _problems({"holdout": holdout}))


def test_override_problems_are_located() -> None:
    data = {
        "experiments": [
            _experiment("a", overrides={"qa-1": "treatment", "qa-2": "lite", 42: "control", "qa-3": None}),
            _experiment("b", overrides=["qa-1"]),
        ]
    }
    assert _problems(data) == [
        "experiments.yaml: experiments[0].overrides.qa-2: unknown variant 'lite' (variants: control, treatment)",
        "experiments.yaml: experiments[0].overrides: user id must be a non-empty string (quote it), got 42",
        "experiments.yaml: experiments[0].overrides.qa-3: unknown variant None (variants: control, treatment)",
        "experiments.yaml: experiments[1].overrides: must be a mapping of user id to variant key, got list",
    ]


def test_a_user_can_be_forced_into_only_one_experiment_per_layer() -> None:
    data = {
        "layers": [
            _layer(
                "l1",
                _layered("a", 0, 0.5, overrides={"qa-1": "control"}),
                _layered("b", 0.5, 1, overrides={"qa-1": "treatment", "qa-2": "control"}),
            )
        ],
        "experiments": [_experiment("c", overrides={"qa-1": "control"})],  # another slot: fine
    }
    assert _problems(data) == [
        "experiments.yaml: layers[0].experiments[1].overrides.qa-1: user 'qa-1' is already forced into 'a' "
        "of the same layer (at layers[0].experiments[0]); a user can be in one experiment per layer"
    ]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            {"start": "2026-12-01T00:00:00Z", "stop": "2026-11-01T00:00:00Z"},
            "experiments[0].stop: must be after start (2026-12-01T00:00:00+00:00), got 2026-11-01T00:00:00+00:00",
        ),
        (
            {"start": dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "stop": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)},
            "experiments[0].stop: must be after start",
        ),
        ({"start": "2026-11-01T00:00:00"}, "experiments[0].start: must be an ISO-8601 timestamp with a timezone"),
        ({"stop": dt.datetime(2026, 11, 1)}, "experiments[0].stop: must be an ISO-8601 timestamp with a timezone"),
        ({"start": "soon"}, "experiments[0].start: must be an ISO-8601 timestamp with a timezone"),
        ({"start": 1767225600}, "experiments[0].start: must be an ISO-8601 timestamp with a timezone"),
    ],
)
def test_schedule_problems_are_located(fields: dict[str, Any], problem: str) -> None:
    assert any(
        p.startswith(f"experiments.yaml: {problem}") for p in _problems({"experiments": [_experiment(**fields)]})
    )


def test_new_params_are_validated() -> None:
    exp = _experiment(
        variants=[
            _variant("a", recent_weight=1.5, shadow_model="lgbm-v9"),
            _variant("b", recent_weight=0.2, shadow_model="lgbm-v1", boost=2),
        ]
    )
    assert _problems({"experiments": [exp]}, known_models=["lgbm-v1"]) == [
        "experiments.yaml: experiments[0].variants[0].params.recent_weight: must be a number in 0..1, got 1.5",
        "experiments.yaml: experiments[0].variants[0].params.shadow_model: unknown model version 'lgbm-v9' "
        "(known: lgbm-v1)",
        "experiments.yaml: experiments[0].variants[1].params: unknown param 'boost' (allowed: cascade_size, "
        "co_listen_size, diversity_cap, model_version, open_slots, recent_weight, retrieval_size, seed_neighbors_size, "
        "seed_weight, shadow_model)",
    ]


def test_validate_file_returns_no_problem_for_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(LAYERED_YAML, encoding="utf-8")
    assert validate_file(path, known_models=["lgbm-v1-lite", "lgbm-v2"]) == []
    assert validate_file(path) == []  # model versions unchecked without known_models


def test_validate_file_returns_every_problem_of_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        LAYERED_YAML.replace("range: [0.5, 1]", "range: [0.4, 1]")
        .replace("weight: 0.75", "weight: 0.7")
        .replace("qa-user-1: lite", "qa-user-1: heavy")
        .replace("coverage: 0.05", "coverage: 0.9")
        .replace("- {key: cap3, weight: 0.5, params: {diversity_cap: 3}}", ""),
        encoding="utf-8",
    )
    problems = validate_file(path, known_models=["lgbm-v1-lite"])
    assert [p.removeprefix(f"{path}: ") for p in problems] == [
        "holdout.coverage: must be a number in 0..0.5, got 0.9",
        "layers[0].experiments[0].variants[1].params.shadow_model: unknown model version 'lgbm-v2' "
        "(known: lgbm-v1-lite)",
        "layers[0].experiments[0].overrides.qa-user-1: unknown variant 'heavy' (variants: control, lite)",
        "layers[0].experiments[1].variants: weights must sum to 1, got 0.95",
        "layers[0].experiments[1].range: [0.4, 1) of 'home-blend' overlaps [0, 0.5) of 'home-ranker-lite' "
        "(at layers[0].experiments[0])",
        "experiments[0].variants: needs at least 2 variants, got 1",
        "experiments[0].variants: weights must sum to 1, got 0.5",
    ]
    assert all(p.startswith(f"{path}: ") for p in problems)


def test_validate_file_reports_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    assert validate_file(tmp_path / "missing.yaml")[0].startswith(f"{tmp_path / 'missing.yaml'}: cannot read")
    path = tmp_path / "dup.yaml"
    path.write_text("layers: []\nlayers: []\n", encoding="utf-8")
    (problem,) = validate_file(path)
    assert "found duplicate key 'layers'" in problem


# --- surfaces and params come from ranking.types ------------------------------------------


def test_surfaces_parse_into_the_ranking_surface_enum() -> None:
    config = parse_experiments(
        {
            "layers": [{"key": "np-ranking", "surface": "now_playing", "experiments": []}],
            "experiments": [_experiment()],
        },
        "experiments.yaml",
    )
    assert config.experiments[0].surface is Surface.HOME
    assert config.layers[0].surface is Surface.NOW_PLAYING
    assert config.on_surface(Surface.HOME) == config.experiments
    assert config.layers_on(Surface.NOW_PLAYING) == config.layers
    (problem,) = _problems({"experiments": [_experiment(surface="search")]})
    allowed = ", ".join(sorted(s.value for s in Surface))
    assert problem == f"experiments.yaml: experiments[0].surface: unknown surface 'search' (allowed: {allowed})"


def test_variant_params_are_the_tunable_fields_of_ranking_params() -> None:
    ranking_fields = {f.name for f in dataclasses.fields(RankingParams)}
    assert set(TUNABLE_PARAMS) <= ranking_fields
    assert set(TUNABLE_PARAMS) == {
        "model_version",
        "retrieval_size",
        "seed_weight",
        "recent_weight",
        "diversity_cap",
        "shadow_model",
        "seed_neighbors_size",
        "co_listen_size",
        "open_slots",
        "cascade_size",
    }
    assert "popularity_size" not in TUNABLE_PARAMS  # a surface setting only
    for name, spec in TUNABLE_PARAMS.items():
        value = {"model": "lgbm-v1", "int": spec.hi, "fraction": 0.25}[spec.kind]
        exp = _experiment(variants=[_variant("control"), _variant("treatment", **{name: value})])
        (parsed,) = parse_experiments({"experiments": [exp]}, "experiments.yaml", ["lgbm-v1"]).experiments
        params = parsed.variants[1].params
        assert getattr(params, name) == value and list(params.items()) == [(name, value)]
        assert getattr(RankingParams().with_overrides(dict(params.items())), name) == value
        bad = {"model": "", "int": spec.hi + 1, "fraction": 1.5}[spec.kind]
        expected = {
            "model": "must be a non-empty string, got ''",
            "int": f"must be an int in {spec.lo}..{spec.hi}, got {spec.hi + 1}",
            "fraction": "must be a number in 0..1, got 1.5",
        }[spec.kind]
        exp = _experiment(variants=[_variant("control"), _variant("treatment", **{name: bad})])
        assert _problems({"experiments": [exp]}) == [
            f"experiments.yaml: experiments[0].variants[1].params.{name}: {expected}"
        ]
    exp = _experiment(variants=[_variant("control"), _variant("treatment", popularity_size=50)])
    assert _problems({"experiments": [exp]}) == [
        "experiments.yaml: experiments[0].variants[1].params: unknown param 'popularity_size' (allowed: "
        + ", ".join(sorted(TUNABLE_PARAMS))
        + ")"
    ]


def test_variant_params_are_an_immutable_hashable_partial_ranking_params() -> None:
    params = VariantParams(diversity_cap=3, seed_weight=0.8)
    assert params == VariantParams(seed_weight=0.8, diversity_cap=3) != VariantParams(seed_weight=0.8)
    assert hash(params) == hash(VariantParams(seed_weight=0.8, diversity_cap=3))
    assert list(params.items()) == [("seed_weight", 0.8), ("diversity_cap", 3)]  # RankingParams order
    assert params.model_version is None and params.diversity_cap == 3
    assert VariantParams(model_version=None) == VariantParams()
    assert repr(params) == "VariantParams(seed_weight=0.8, diversity_cap=3)"
    assert pickle.loads(pickle.dumps(params)) == params == copy.deepcopy(params)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.diversity_cap = 4
    with pytest.raises(AttributeError, match="popularity_size"):
        _ = params.popularity_size
    with pytest.raises(TypeError, match="not a tunable ranking param: popularity_size"):
        VariantParams(popularity_size=50)
