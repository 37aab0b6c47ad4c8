"""Settings from ENCORE_* variables: every key has one, parsed by its type; flags > env > file > defaults;
errors name the variable; the README's settings table is the generated one."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from cli.config import END, START, table_block, with_table
from ranking.types import Surface
from serving.config import (
    Settings,
    bundle_from_env,
    env_name,
    load_settings,
    setting_specs,
    settings_from_env,
    settings_table,
)
from serving.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_settings_field_and_nested_key_has_a_variable_and_a_description() -> None:
    specs = setting_specs()
    keys = {s.key for s in specs}
    assert {f.name for f in fields(Settings)} - {"bundle", "stages", "surfaces"} <= keys
    assert {"stages.retrieval_ms", "surfaces.now_playing.budget_ms", "surfaces.home.known_items"} <= keys
    assert len({s.env for s in specs}) == len(specs)  # no two keys share a variable
    assert all(s.env == env_name(s.key) and s.env.startswith("ENCORE_") for s in specs)
    undocumented = [s.key for s in specs if not s.description]
    assert undocumented == [], "document these keys in serving/config.py's YAML layout"


def test_variables_are_parsed_by_the_keys_type() -> None:
    env = {
        "ENCORE_PORT": "50052",
        "ENCORE_METRICS_PORT": "null",
        "ENCORE_EXPOSURE_LOG_DIR": "/var/lib/encore/exposures",
        "ENCORE_LOAD_FEATURES": "TRUE",
        "ENCORE_SCORE_INLINE": "off",
        "ENCORE_REDIS_TIMEOUT_MS": "12.5",
        "ENCORE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "ENCORE_STAGES_RETRIEVAL_MS": "7",
        "ENCORE_SURFACES_NOW_PLAYING_BUDGET_MS": "45",
        "ENCORE_SURFACES_HOME_KNOWN_ITEMS": "keep",
        "ENCORE_LOG_FORMAT": "json",
        "ENCORE_ADMIN_TOKEN": "not-a-setting-and-left-alone",
        "ENCORE_CPU_THREADS": "",  # empty: unset
    }
    s = load_settings(Path("b"), environ=env)
    assert (s.port, s.metrics_port, s.exposure_log_dir) == (50052, None, Path("/var/lib/encore/exposures"))
    assert (s.load_features, s.score_inline, s.redis_timeout_ms) == (True, False, 12.5)
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.stages.retrieval == pytest.approx(0.007)
    assert s.stages.scoring == pytest.approx(0.025)  # the other stages keep their defaults
    assert s.surfaces[Surface.NOW_PLAYING].budget_ms == 45
    assert s.surfaces[Surface.NOW_PLAYING].default_limit == 10
    assert s.surfaces[Surface.HOME].params.known_items == "keep"
    assert s.log_format == "json"
    assert s.cpu_threads == 4


def test_flags_beat_variables_which_beat_the_file_which_beats_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("port: 6000\nmetrics_port: 6001\nmax_events: 7\nstages: {scoring_ms: 5, retrieval_ms: 9}\n")
    env = {"ENCORE_PORT": "7000", "ENCORE_METRICS_PORT": "7001", "ENCORE_STAGES_SCORING_MS": "3"}
    s = load_settings(Path("b"), config, environ=env, port=8000)
    assert (s.port, s.metrics_port, s.max_events, s.max_in_flight) == (8000, 7001, 7, 4)
    assert (s.stages.scoring, s.stages.retrieval) == (pytest.approx(0.003), pytest.approx(0.009))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ENCORE_PORT": "fast"}, "ENCORE_PORT: expected int, got 'fast'"),
        ({"ENCORE_PORT": "null"}, "ENCORE_PORT: expected int, got 'null'"),
        ({"ENCORE_PORT": "-1"}, "ENCORE_PORT: port: must be an integer >= 0"),
        ({"ENCORE_LOAD_FEATURES": "maybe"}, "ENCORE_LOAD_FEATURES: expected bool"),
        ({"ENCORE_CAPTURE_FRACTION": "nan"}, "ENCORE_CAPTURE_FRACTION: expected float"),
        ({"ENCORE_CAPTURE_FRACTION": "2"}, "ENCORE_CAPTURE_FRACTION: capture_fraction: must be in 0..1"),
        ({"ENCORE_LOG_FORMAT": "xml"}, "ENCORE_LOG_FORMAT: expected one of text, json"),
        (
            {"ENCORE_SURFACES_HOME_DEFAULT_LIMIT": "500"},
            "ENCORE_SURFACES_HOME_DEFAULT_LIMIT: surfaces.home.default_limit",
        ),
        ({"ENCORE_STAGES_RETRIEVAL_MS": "-3"}, "ENCORE_STAGES_RETRIEVAL_MS: stages.retrieval_ms: must be a number"),
        ({"ENCORE_TLS_CERT": "c.pem"}, "ENCORE_TLS_CERT: tls_cert and tls_key: give both"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(Path("b"), environ=env)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_file_error_still_names_the_file_and_key_when_variables_are_set(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("max_events: 0\n")
    with pytest.raises(ConfigError, match=r"s\.yaml: max_events: must be an integer >= 1"):
        load_settings(Path("b"), config, environ={"ENCORE_PORT": "7000"})


def test_settings_from_env_nests_the_nested_keys() -> None:
    values, variables = settings_from_env({"ENCORE_SURFACES_HOME_BUDGET_MS": "50", "ENCORE_HOST": "0.0.0.0"})
    assert values == {"surfaces": {"home": {"budget_ms": 50.0}}, "host": "0.0.0.0"}
    assert variables == {"surfaces.home.budget_ms": "ENCORE_SURFACES_HOME_BUDGET_MS", "host": "ENCORE_HOST"}


def test_the_bundle_may_come_from_the_environment() -> None:
    assert bundle_from_env({"ENCORE_BUNDLE": "/srv/bundles/current"}) == Path("/srv/bundles/current")
    assert bundle_from_env({"ENCORE_BUNDLE": " "}) is None
    assert bundle_from_env({}) is None


def test_the_table_lists_every_key_with_its_variable_type_and_default() -> None:
    table = settings_table()
    lines = table.splitlines()
    assert lines[0] == "| setting | environment variable | type | default | description |"
    assert len(lines) == 2 + 1 + len(setting_specs())
    assert (
        "| `metrics_port` | `ENCORE_METRICS_PORT` | int or null | `9464` | null disables the metrics endpoint |"
        in lines
    )
    row = next(line for line in lines if line.startswith("| `surfaces.now_playing.budget_ms` |"))
    assert "| float | `60` |" in row


def test_the_readme_settings_table_is_the_generated_one() -> None:
    block = table_block(README.read_text(encoding="utf-8"), "README.md")
    assert block == settings_table(), "run: encore config table --write README.md"


def test_the_table_block_is_replaced_between_its_markers() -> None:
    text = f"intro\n{START}\nold\n{END}\nafter\n"
    assert with_table(text, "| new |\n") == f"intro\n{START}\n| new |\n{END}\nafter\n"
    with pytest.raises(ConfigError, match="no <!-- settings-table:start -->"):
        table_block("no markers")
