"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RedisProcess, tiny_bundle


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
