"""Assignment: deterministic, GrowthBook-compatible, weights respected, first experiment wins."""

from __future__ import annotations

from typing import Any

import pytest
from scipy import stats

from serving.experiments.assignment import (
    EMPTY_RESULT,
    Assigner,
    Assignment,
    AssignmentResult,
    ParamConflict,
)
from serving.experiments.config import ExperimentsConfig, parse_experiments
from serving.experiments.hashing import choose_variation, gb_hash, get_bucket_ranges

USER_IDS = [f"user-{i}" for i in range(20_000)]


def _config(*experiments: dict[str, Any]) -> ExperimentsConfig:
    return parse_experiments({"experiments": list(experiments)}, "test.yaml")


def _exp(
    key: str,
    weights: tuple[float, ...] = (0.5, 0.5),
    params: tuple[dict[str, Any], ...] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    params = params or tuple({} for _ in weights)
    exp: dict[str, Any] = {
        "key": key,
        "surface": "home",
        "coverage": 1.0,
        "status": "running",
        "variants": [
            {"key": f"v{i}", "weight": w, "params": p} for i, (w, p) in enumerate(zip(weights, params, strict=True))
        ],
    }
    exp.update(fields)
    return exp


def test_assignment_is_deterministic_across_calls_and_assigners() -> None:
    config = _config(_exp("a", (0.2, 0.3, 0.5)), _exp("b", coverage=0.5))
    first, second = Assigner(config), Assigner(config)
    for uid in USER_IDS[:2000]:
        result = first.assign(uid, "home")
        assert result == first.assign(uid, "home") == second.assign(uid, "home")


def test_assignment_matches_growthbook_bucketing_formula() -> None:
    config = _config(_exp("a", (0.2, 0.3, 0.5), seed="seed-a", coverage=0.7, hash_version=1))
    assigner = Assigner(config)
    ranges = get_bucket_ranges(3, 0.7, [0.2, 0.3, 0.5])
    for uid in USER_IDS[:2000]:
        n = gb_hash("seed-a", uid, 1)
        assert n is not None
        i = choose_variation(n, ranges)
        expected = () if i == -1 else (Assignment("a", f"v{i}"),)
        assert assigner.assign(uid, "home").assignments == expected


def test_variant_counts_match_weights_over_20000_users() -> None:
    weights = (0.2, 0.3, 0.5)
    assigner = Assigner(_config(_exp("a", weights)))
    counts = dict.fromkeys(("v0", "v1", "v2"), 0)
    for uid in USER_IDS:
        (assignment,) = assigner.assign(uid, "home").assignments
        counts[assignment.variant] += 1
    observed = [counts[k] for k in ("v0", "v1", "v2")]
    expected = [w * len(USER_IDS) for w in weights]
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_coverage_admits_roughly_that_share_of_users() -> None:
    assigner = Assigner(_config(_exp("a", coverage=0.3)))
    inside = sum(bool(assigner.assign(uid, "home").assignments) for uid in USER_IDS)
    assert stats.binomtest(inside, len(USER_IDS), 0.3).pvalue > 1e-4


def test_raising_coverage_never_moves_an_assigned_user_to_another_arm() -> None:
    low = Assigner(_config(_exp("a", (0.4, 0.6), coverage=0.2)))
    high = Assigner(_config(_exp("a", (0.4, 0.6), coverage=0.6)))
    moved_in = 0
    for uid in USER_IDS[:5000]:
        before = low.assign(uid, "home").assignments
        after = high.assign(uid, "home").assignments
        if before:
            assert after == before
        elif after:
            moved_in += 1
    assert moved_in > 0


def test_user_outside_coverage_gets_no_assignment_and_no_overrides() -> None:
    assigner = Assigner(_config(_exp("a", params=({"retrieval_size": 100}, {"retrieval_size": 200}), coverage=0.0)))
    assert assigner.assign("user-1", "home") == AssignmentResult((), {})
    assert assigner.assign("user-1", "home") is EMPTY_RESULT


def test_only_running_experiments_on_the_requested_surface_assign() -> None:
    assigner = Assigner(
        _config(
            _exp("draft", status="draft"),
            _exp("stopped", status="stopped"),
            _exp("np", surface="now_playing", params=({"seed_weight": 0.3}, {"seed_weight": 0.7})),
            _exp("home"),
        )
    )
    for uid in USER_IDS[:200]:
        home = assigner.assign(uid, "home")
        assert [a.experiment for a in home.assignments] == ["home"]
        assert home.overrides == {}
        now_playing = assigner.assign(uid, "now_playing")
        assert [a.experiment for a in now_playing.assignments] == ["np"]
        assert now_playing.overrides["seed_weight"] in (0.3, 0.7)


def test_variant_params_become_overrides() -> None:
    params: tuple[dict[str, Any], ...] = ({}, {"model_version": "lgbm-v1-lite", "retrieval_size": 200})
    assigner = Assigner(_config(_exp("lite", params=params)))
    seen: set[str] = set()
    for uid in USER_IDS[:200]:
        result = assigner.assign(uid, "home")
        (assignment,) = result.assignments
        seen.add(assignment.variant)
        if assignment.variant == "v0":
            assert result.overrides == {}
        else:
            assert result.overrides == {"model_version": "lgbm-v1-lite", "retrieval_size": 200}
    assert seen == {"v0", "v1"}


def test_first_experiment_in_config_order_wins_a_shared_param() -> None:
    first = _exp("first", params=({"retrieval_size": 100}, {"retrieval_size": 200}))
    second = _exp("second", params=({"retrieval_size": 300, "diversity_cap": 2}, {"retrieval_size": 400}))
    forward, backward = Assigner(_config(first, second)), Assigner(_config(second, first))

    for uid in USER_IDS[:500]:
        fwd, bwd = forward.assign(uid, "home"), backward.assign(uid, "home")
        arm = {a.experiment: a.variant for a in fwd.assignments}
        # Both experiments still record their assignment...
        assert [a.experiment for a in fwd.assignments] == ["first", "second"]
        assert [a.experiment for a in bwd.assignments] == ["second", "first"]
        # ...but a param set by both comes from whichever is first in the config.
        assert fwd.overrides["retrieval_size"] == {"v0": 100, "v1": 200}[arm["first"]]
        assert bwd.overrides["retrieval_size"] == {"v0": 300, "v1": 400}[arm["second"]]
        # A param only the later experiment sets still applies.
        if arm["second"] == "v0":
            assert fwd.overrides["diversity_cap"] == 2

    assert forward.conflicts == (ParamConflict("home", "retrieval_size", "first", "second"),)
    assert backward.conflicts == (ParamConflict("home", "retrieval_size", "second", "first"),)


def test_experiments_with_disjoint_params_merge_without_conflict() -> None:
    assigner = Assigner(
        _config(
            _exp("a", weights=(1.0, 0.0), params=({"retrieval_size": 100}, {})),
            _exp("b", weights=(1.0, 0.0), params=({"diversity_cap": 5}, {})),
        )
    )
    result = assigner.assign("user-1", "home")
    assert result.overrides == {"retrieval_size": 100, "diversity_cap": 5}
    assert assigner.conflicts == ()


def test_overrides_are_read_only() -> None:
    assigner = Assigner(_config(_exp("a", weights=(1.0, 0.0), params=({"diversity_cap": 5}, {}))))
    overrides = assigner.assign("user-1", "home").overrides
    with pytest.raises(TypeError):
        overrides["diversity_cap"] = 1  # type: ignore[index]


def test_empty_user_id_is_in_no_experiment() -> None:
    assert Assigner(_config(_exp("a"))).assign("", "home") is EMPTY_RESULT


def test_unknown_surface_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown surface 'search'"):
        Assigner(_config(_exp("a"))).assign("user-1", "search")


def test_empty_config_assigns_nothing() -> None:
    assigner = Assigner(ExperimentsConfig())
    assert assigner.assign("user-1", "home") is EMPTY_RESULT
    assert assigner.assign("user-1", "now_playing") is EMPTY_RESULT


def test_assignments_match_growthbook_python_sdk_run() -> None:
    import growthbook  # dev dependency: an independent implementation to cross-check

    cases = [
        ("a", (0.2, 0.3, 0.5), 0.8, 2),
        ("b", (0.5, 0.5), 0.35, 2),
        ("c", (0.1, 0.9), 1.0, 1),
    ]
    ids = [*USER_IDS[:150], "Zoë", "用户-42", "user-🎵-7", "ñandú", "😀"]
    for key, weights, coverage, version in cases:
        assigner = Assigner(_config(_exp(key, weights, seed=f"seed-{key}", coverage=coverage, hash_version=version)))
        experiment = growthbook.Experiment(
            key=key,
            variations=list(range(len(weights))),
            weights=list(weights),
            coverage=coverage,
            seed=f"seed-{key}",
            hashVersion=version,
        )
        for uid in ids:
            gb_result = growthbook.GrowthBook(attributes={"id": uid}).run(experiment)
            ours = assigner.assign(uid, "home").assignments
            if gb_result.inExperiment:
                assert ours == (Assignment(key, f"v{gb_result.variationId}"),), uid
            else:
                assert ours == (), uid
