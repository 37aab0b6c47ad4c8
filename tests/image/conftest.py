"""tests/image: the container image, run with podman (``make image-test``).

Outside ``testpaths`` (pyproject.toml), so a bare ``pytest`` never collects it; it needs the image
that ``make image`` builds and podman (with deploy/image/containers.conf on hosts like CI's).
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: builds on the container image (make image-test)")
