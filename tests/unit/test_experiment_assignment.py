"""Assignment: deterministic, GrowthBook-compatible, layers exclusive, holdout, allowlist, schedules."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from scipy import stats

from ranking.types import Surface
from serving.experiments.assignment import (
    EMPTY_RESULT,
    Assigner,
    Assignment,
    AssignmentResult,
    ParamConflict,
)
from serving.experiments.config import ExperimentsConfig, parse_experiments
from serving.experiments.hashing import choose_variation, gb_hash, get_bucket_ranges, namespace_hash

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


def test_surfaces_are_the_ranking_surface_enum() -> None:
    both = ({"retrieval_size": 100}, {"retrieval_size": 200})
    assigner = Assigner(_config(_exp("a", params=both), _exp("b", params=both)))
    for uid in USER_IDS[:50]:
        assert assigner.assign(uid, Surface.HOME) == assigner.assign(uid, "home")
    (conflict,) = assigner.conflicts
    assert conflict.surface is Surface.HOME


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


# --- layers, holdout, overrides, schedules ------------------------------------------------

NON_ASCII_IDS = ["Zoë", "用户-42", "user-🎵-7", "ñandú", "😀", "İstanbul", "𝄞clef", "a\ud83d"]
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
STOP = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _mixed_ids(count: int, seed: int) -> list[str]:
    """ASCII and non-ASCII ids (accents, CJK, emoji outside the BMP)."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_äöüßéñç用户音乐😀🎵𝄞"
    return [*NON_ASCII_IDS, *("".join(rng.choices(alphabet, k=rng.randint(1, 20))) for _ in range(count))]


def _layered(
    key: str, start: float, end: float, weights: tuple[float, ...] = (0.5, 0.5), **fields: Any
) -> dict[str, Any]:
    exp = _exp(key, weights, **fields)
    del exp["surface"]
    exp["range"] = [start, end]
    return exp


def _full_config(
    layers: list[dict[str, Any]] | None = None,
    experiments: list[dict[str, Any]] | None = None,
    holdout: dict[str, Any] | None = None,
) -> ExperimentsConfig:
    data: dict[str, Any] = {"layers": layers or [], "experiments": experiments or []}
    if holdout is not None:
        data["holdout"] = holdout
    return parse_experiments(data, "test.yaml")


def _home_layer(*experiments: dict[str, Any], key: str = "home-ranking") -> dict[str, Any]:
    return {"key": key, "surface": "home", "experiments": list(experiments)}


class _Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> dt.datetime:
        self.calls += 1
        return self.now


def _never() -> dt.datetime:
    raise AssertionError("the clock must not be read")


def test_layered_assignments_match_growthbook_run_with_namespaces() -> None:
    import growthbook

    specs = [  # (key, weights, coverage, hash version, range)
        ("a", (0.2, 0.3, 0.5), 0.8, 2, (0.0, 0.3)),
        ("b", (0.5, 0.5), 0.4, 1, (0.3, 0.75)),
        ("c", (0.1, 0.9), 1.0, 2, (0.75, 1.0)),
    ]
    layer = _home_layer(
        *(_layered(k, s, e, w, coverage=c, hash_version=v, seed=f"seed-{k}") for k, w, c, v, (s, e) in specs)
    )
    independent = _exp("d", (0.3, 0.7), seed="seed-d", coverage=0.9)
    assigner = Assigner(_full_config([layer], [independent]))
    gb_experiments = [
        growthbook.Experiment(
            key=k,
            variations=list(range(len(w))),
            weights=list(w),
            coverage=c,
            seed=f"seed-{k}",
            hashVersion=v,
            namespace=("home-ranking", s, e),
        )
        for k, w, c, v, (s, e) in specs
    ]
    gb_experiments.append(
        growthbook.Experiment(
            key="d", variations=[0, 1], weights=[0.3, 0.7], coverage=0.9, seed="seed-d", hashVersion=2
        )
    )
    in_layer = 0
    for uid in _mixed_ids(2500, seed=3):
        gb = growthbook.GrowthBook(attributes={"id": uid})
        expected = []
        for gb_exp in gb_experiments:
            result = gb.run(gb_exp)
            if result.inExperiment:
                expected.append(Assignment(gb_exp.key, f"v{result.variationId}"))
        ours = assigner.assign(uid, "home").assignments
        assert ours == tuple(expected), uid
        in_layer += sum(a.experiment != "d" for a in ours)
    assert in_layer > 1000


def test_growthbook_published_namespace_run_cases() -> None:
    # cases.json "run": "Experiment namespace - pass/fail" (GrowthBook's default hash version is 1).
    def run(rng: tuple[float, float]) -> tuple[Assignment, ...]:
        exp = _layered("my-test", *rng, hash_version=1)
        return Assigner(_full_config([_home_layer(exp, key="namespace")])).assign("1", "home").assignments

    assert run((0.1, 1.0)) == (Assignment("my-test", "v1"),)
    assert run((0.0, 0.1)) == ()
    # "Uses seed with default weights/coverage": seed foo, hash version 2, id "1" -> variation 1.
    assigner = Assigner(_config(_exp("key", seed="foo", hash_version=2)))
    assert assigner.assign("1", "home").assignments == (Assignment("key", "v1"),)


def test_no_user_is_in_two_experiments_of_a_layer_and_the_split_follows_the_ranges() -> None:
    layer = _home_layer(_layered("a", 0.0, 0.2), _layered("b", 0.2, 0.5), _layered("c", 0.5, 1.0))
    other = {
        "key": "np-ranking",
        "surface": "home",
        "experiments": [_layered("x", 0.0, 0.5), _layered("y", 0.5, 1.0)],
    }
    assigner = Assigner(_full_config([layer, other]))
    counts = {"a": 0, "b": 0, "c": 0}
    joint = [[0, 0] for _ in range(3)]
    for uid in USER_IDS:
        first, second = assigner.assign(uid, "home").assignments  # one per layer, never two
        counts[first.experiment] += 1
        joint["abc".index(first.experiment)]["xy".index(second.experiment)] += 1
    observed = [counts[k] for k in "abc"]
    assert stats.chisquare(observed, [0.2 * 20_000, 0.3 * 20_000, 0.5 * 20_000]).pvalue > 1e-4
    # Layers hash independently: the experiment in one layer says nothing about the other.
    assert stats.chi2_contingency(joint).pvalue > 1e-4


def test_inactive_experiment_keeps_its_range_reserved() -> None:
    layer = _home_layer(_layered("draft", 0.0, 0.5, status="draft"), _layered("live", 0.5, 1.0))
    assigner = Assigner(_full_config([layer]))
    for uid in USER_IDS[:3000]:
        expected = () if namespace_hash("home-ranking", uid) < 0.5 else ("live",)
        assert tuple(a.experiment for a in assigner.assign(uid, "home").assignments) == expected


def test_raising_coverage_of_a_layered_experiment_never_moves_a_user_between_arms() -> None:
    def assigner(coverage: float) -> Assigner:
        return Assigner(_full_config([_home_layer(_layered("a", 0.2, 0.9, (0.3, 0.7), coverage=coverage))]))

    ramp = [assigner(c) for c in (0.1, 0.4, 1.0)]
    for uid in USER_IDS[:5000]:
        arms = [a.assign(uid, "home").assignments for a in ramp]
        entered = [arm for arm in arms if arm]
        assert all(arm == entered[0] for arm in entered)
        # Once in, in at every higher coverage.
        assert [bool(arm) for arm in arms] == sorted(bool(arm) for arm in arms)


def test_global_holdout_takes_its_share_of_users_out_of_every_experiment() -> None:
    config = _full_config(
        [_home_layer(_layered("a", 0.0, 1.0, params=({"retrieval_size": 100}, {"retrieval_size": 200})))],
        [_exp("np", surface="now_playing")],
        holdout={"coverage": 0.05},
    )
    assigner = Assigner(config)
    held = Assignment("global-holdout", "holdout")
    general = Assignment("global-holdout", "general")
    held_out = 0
    for uid in USER_IDS:
        home, now_playing = assigner.assign(uid, "home"), assigner.assign(uid, "now_playing")
        if home.assignments[0] == held:
            held_out += 1
            assert home == now_playing == AssignmentResult((held,), {})
        else:
            assert home.assignments[0] == now_playing.assignments[0] == general
            assert [a.experiment for a in home.assignments[1:]] == ["a"] and home.overrides
            assert [a.experiment for a in now_playing.assignments[1:]] == ["np"]
    assert stats.binomtest(held_out, len(USER_IDS), 0.05).pvalue > 1e-4


def test_holdout_is_recomputable_as_a_two_arm_growthbook_experiment() -> None:
    import growthbook

    assigner = Assigner(_full_config(holdout={"coverage": 0.2, "key": "holdout-2026", "seed": "h-seed"}))
    gb_holdout = growthbook.Experiment(
        key="holdout-2026", variations=[0, 1], weights=[0.2, 0.8], seed="h-seed", hashVersion=2
    )
    for uid in _mixed_ids(1500, seed=5):
        (ours,) = assigner.assign(uid, "home").assignments
        gb_arm = growthbook.GrowthBook(attributes={"id": uid}).run(gb_holdout).variationId
        assert ours == Assignment("holdout-2026", "holdout" if gb_arm == 0 else "general"), uid


def test_holdout_with_zero_coverage_is_off() -> None:
    assigner = Assigner(_full_config(holdout={"coverage": 0}))
    assert assigner.assign("user-1", "home") is EMPTY_RESULT


def test_allowlisted_user_gets_the_forced_variant_and_is_not_an_exposure() -> None:
    params: tuple[dict[str, Any], ...] = ({}, {"retrieval_size": 200})
    config = _config(_exp("a", params=params, overrides={"qa-1": "v1", "qa-2": "v0"}))
    assigner = Assigner(config)
    assert assigner.assign("qa-1", "home") == AssignmentResult(
        (Assignment("a", "v1", exposed=False),), {"retrieval_size": 200}
    )
    assert assigner.assign("qa-2", "home").assignments == (Assignment("a", "v0", exposed=False),)
    assert all(a.exposed for uid in USER_IDS[:200] for a in assigner.assign(uid, "home").assignments)


def test_allowlist_wins_over_the_holdout_and_over_the_layer_hash() -> None:
    held_uid = next(u for u in USER_IDS if (gb_hash("global-holdout", u, 2) or 1.0) < 0.1)
    b_uid = next(u for u in USER_IDS if namespace_hash("home-ranking", u) >= 0.5)
    layer = _home_layer(
        _layered("a", 0.0, 0.5, params=({"diversity_cap": 3}, {"diversity_cap": 4}), overrides={b_uid: "v1"}),
        _layered("b", 0.5, 1.0, overrides={held_uid: "v0"}),
    )
    assigner = Assigner(_full_config([layer], holdout={"coverage": 0.1}))
    # Hashing would put b_uid in 'b'; forced into 'a', it is in 'a' only.
    assert assigner.assign(b_uid, "home") == AssignmentResult(
        (Assignment("global-holdout", "general"), Assignment("a", "v1", exposed=False)), {"diversity_cap": 4}
    )
    # A held-out user still gets a forced variant (and the holdout record).
    assert assigner.assign(held_uid, "home").assignments == (
        Assignment("global-holdout", "holdout"),
        Assignment("b", "v0", exposed=False),
    )


def test_allowlist_applies_to_drafts_and_before_start_but_not_when_stopped_or_after_stop() -> None:
    clock = _Clock(START - dt.timedelta(days=1))

    def forced(**fields: Any) -> tuple[Assignment, ...]:
        config = _config(_exp("a", overrides={"qa-1": "v1"}, **fields))
        return Assigner(config, clock=clock).assign("qa-1", "home").assignments

    assert forced(status="draft") == (Assignment("a", "v1", exposed=False),)
    assert forced(start=START.isoformat(), stop=STOP.isoformat()) == (Assignment("a", "v1", exposed=False),)
    assert forced(status="stopped") == ()
    clock.now = STOP
    assert forced(status="draft", stop=STOP.isoformat()) == ()


def test_start_and_stop_bound_the_experiment_with_an_injected_clock() -> None:
    clock = _Clock(START - dt.timedelta(seconds=1))
    assigner = Assigner(_config(_exp("a", start=START.isoformat(), stop=STOP.isoformat())), clock=clock)
    assert assigner.assign("user-1", "home") is EMPTY_RESULT
    clock.now = START
    assert [a.experiment for a in assigner.assign("user-1", "home").assignments] == ["a"]
    clock.now = STOP - dt.timedelta(microseconds=1)
    assert [a.experiment for a in assigner.assign("user-1", "home").assignments] == ["a"]
    clock.now = STOP
    assert assigner.assign("user-1", "home") is EMPTY_RESULT
    assert clock.calls == 4  # once per assign


def test_clock_is_not_read_without_a_schedule() -> None:
    layer = _home_layer(_layered("a", 0.0, 1.0))
    assigner = Assigner(_full_config([layer], [_exp("b")], holdout={"coverage": 0.1}), clock=_never)
    for uid in USER_IDS[:100]:
        assigner.assign(uid, "home")


def test_layers_come_before_independent_experiments_in_param_precedence() -> None:
    layer = _home_layer(
        _layered("a", 0.0, 0.5, params=({"retrieval_size": 100}, {"retrieval_size": 100})),
        _layered("b", 0.5, 1.0, params=({"retrieval_size": 200}, {"retrieval_size": 200})),
    )
    independent = _exp("c", params=({"retrieval_size": 300}, {"retrieval_size": 300, "diversity_cap": 9}))
    assigner = Assigner(_full_config([layer], [independent]))
    for uid in USER_IDS[:300]:
        result = assigner.assign(uid, "home")
        first, second = result.assignments
        assert second.experiment == "c"
        assert result.overrides["retrieval_size"] == {"a": 100, "b": 200}[first.experiment]
    # Experiments of one layer never conflict; each of them shadows the later independent one.
    assert assigner.conflicts == (ParamConflict("home", "retrieval_size", "a", "c"),)
