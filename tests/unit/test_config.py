"""Settings: defaults, YAML, overrides, and errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ranking.types import Surface
from serving.config import load_settings
from serving.errors import ConfigError


def test_defaults_serve_the_embedded_store_with_per_surface_budgets() -> None:
    settings = load_settings(Path("b"))
    assert settings.redis_url is None
    assert settings.surfaces[Surface.HOME].budget_ms == 80
    assert settings.surfaces[Surface.NOW_PLAYING].default_limit == 10


def test_known_items_are_excluded_on_both_surfaces_unless_a_surface_keeps_them(tmp_path: Path) -> None:
    defaults = load_settings(Path("b"))
    assert {s.params.known_items for s in defaults.surfaces.values()} == {"exclude"}
    config = tmp_path / "s.yaml"
    config.write_text(
        "surfaces:\n  home: {known_items: keep, co_listen_size: 0}\n  now_playing: {seed_neighbors_size: 40}\n"
    )
    settings = load_settings(Path("b"), config)
    home, now_playing = settings.surfaces[Surface.HOME].params, settings.surfaces[Surface.NOW_PLAYING].params
    assert (home.known_items, home.co_listen_size) == ("keep", 0)
    assert (now_playing.known_items, now_playing.seed_neighbors_size) == ("exclude", 40)


def test_now_playing_opens_two_slots_before_the_seed_neighbours_and_a_file_may_change_it(tmp_path: Path) -> None:
    defaults = load_settings(Path("b"))
    assert defaults.surfaces[Surface.NOW_PLAYING].params.open_slots == 2
    config = tmp_path / "s.yaml"
    config.write_text("surfaces:\n  now_playing: {open_slots: 0}\n")
    assert load_settings(Path("b"), config).surfaces[Surface.NOW_PLAYING].params.open_slots == 0


def test_yaml_then_flags_override_defaults(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(
        "port: 6000\nstages: {scoring_ms: 5}\nsurfaces:\n  home: {budget_ms: 30, max_limit: 40, diversity_cap: 3}\n"
    )
    settings = load_settings(Path("b"), config, port=7000, redis_url=None)
    assert settings.port == 7000
    assert settings.stages.scoring == pytest.approx(0.005)
    home = settings.surfaces[Surface.HOME]
    assert (home.budget_ms, home.max_limit, home.params.diversity_cap) == (30, 40, 3)
    assert settings.surfaces[Surface.NOW_PLAYING].budget_ms == 60


def test_outcomes_are_logged_to_a_directory_by_default_and_null_disables_it(tmp_path: Path) -> None:
    defaults = load_settings(Path("b"))
    assert (defaults.outcome_log_dir, defaults.outcome_queue_size, defaults.outcome_file_mb) == (
        Path("outcomes"),
        10_000,
        64,
    )
    config = tmp_path / "s.yaml"
    config.write_text(f"outcome_log_dir: {tmp_path / 'out'}\noutcome_queue_size: 50\noutcome_file_mb: 2\n")
    settings = load_settings(Path("b"), config)
    assert (settings.outcome_log_dir, settings.outcome_queue_size, settings.outcome_file_mb) == (
        tmp_path / "out",
        50,
        2,
    )
    config.write_text("outcome_log_dir: null\n")
    assert load_settings(Path("b"), config).outcome_log_dir is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot: 1\n", "prot: unknown setting"),
        ("port: fast\n", "port: expected int"),
        ("surfaces: {radio: {}}\n", "surfaces.radio: unknown surface"),
        ("surfaces: {home: {known_items: hide}}\n", "surfaces.home.known_items: must be one of exclude, keep"),
        ("surfaces: {now_playing: {co_listen_size: -1}}\n", "surfaces.now_playing.co_listen_size: must be an integer"),
        ("surfaces: {now_playing: {open_slots: -2}}\n", "surfaces.now_playing.open_slots: must be an integer >= 0"),
        ("surfaces: {home: {budget_ms: -1}}\n", "surfaces.home.budget_ms: must be a number >= 1"),
        ("surfaces: {home: {default_limit: 500}}\n", "surfaces.home.default_limit: exceeds max_limit"),
        ("surfaces: {now_playing: {seed_weight: 2}}\n", "surfaces.now_playing.seed_weight: must be in 0..1"),
        ("stages: {ranking_ms: 3}\n", "stages.ranking_ms: unknown stage"),
        ("load_features: 1\n", "load_features: expected bool"),
        ("outcome_log_dir: 3\n", "outcome_log_dir: expected str or NoneType"),
        ("outcome_queue_size: 0\n", "outcome_queue_size: must be an integer >= 1"),
        ("outcome_file_mb: 1.5\n", "outcome_file_mb: expected int"),
        ("- a\n", "expected a mapping"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(Path("b"), config)
