"""Experiment config loading and validation: every problem reported, with its location."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from serving.experiments.config import (
    Experiment,
    ExperimentConfigError,
    ExperimentError,
    ExperimentsConfig,
    ExperimentStatus,
    Variant,
    VariantParams,
    load_experiments,
    parse_experiments,
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
