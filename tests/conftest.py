"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.harness import RedisProcess
from models.build import BuildConfig, build_bundle
from tests.support import REAL_DATA, tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundles"))


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    """A fresh real Redis per test (started on a free loopback port, killed afterwards)."""
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def small_build_config(out_dir: Path) -> BuildConfig:
    """Real data when available, else a small synthetic catalog; quick to build either way."""
    models = (("lgbm-v1", 60), ("lgbm-v1-lite", 15))
    if REAL_DATA.is_dir():
        return BuildConfig(
            dataset="hetrec",
            data_path=REAL_DATA,
            out_dir=out_dir,
            version="test-hetrec",
            seed=0,
            factors=64,
            ranker_users=1200,
            eval_users=400,  # each is 3 served-pipeline queries per model
            models=models,
            ranker_replicas=2,  # the real build uses 8; 2 keep the suite quick with the same code path
        )
    return BuildConfig(
        dataset="synthetic",
        n_items=5_000,
        n_users=1_500,
        out_dir=out_dir,
        version="test-synthetic",
        seed=0,
        factors=32,
        ranker_users=800,
        eval_users=800,
        models=models,
    )


@pytest.fixture(scope="session")
def small_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a bundle built once per test session (real HetRec data if present)."""
    out_dir = tmp_path_factory.mktemp("bundles")
    return build_bundle(small_build_config(out_dir), log=lambda _line: None)
