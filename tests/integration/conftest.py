"""Integration fixtures: a small real bundle built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.build import BuildConfig, build_bundle

#: The shared HetRec data, next to the repository (never copied into it).
HETREC_PATH = Path(__file__).resolve().parents[2].parent / "shared/data/hetrec2011-lastfm-2k"


def small_build_config(out_dir: Path) -> BuildConfig:
    """Real data when available, else a small synthetic catalog; quick to build either way."""
    models = (("lgbm-v1", 60), ("lgbm-v1-lite", 15))
    if HETREC_PATH.is_dir():
        return BuildConfig(dataset="hetrec", data_path=HETREC_PATH, out_dir=out_dir, version="test-hetrec",
                           seed=0, factors=64, ranker_users=1200, eval_users=None, models=models)
    return BuildConfig(dataset="synthetic", n_items=5_000, n_users=1_500, out_dir=out_dir,
                       version="test-synthetic", seed=0, factors=32, ranker_users=800, eval_users=800,
                       models=models)


@pytest.fixture(scope="session")
def small_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a bundle built once per test session (real HetRec data if present)."""
    out_dir = tmp_path_factory.mktemp("bundles")
    return build_bundle(small_build_config(out_dir), log=lambda _line: None)
