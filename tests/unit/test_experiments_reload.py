"""Hot reload of the experiments file: applied when valid, refused atomically when not."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from serving.experiments.config import ExperimentsConfig
from serving.experiments.reload import ExperimentsReloader
from serving.metrics import Metrics

GOOD = """
experiments:
  - key: {key}
    surface: home
    coverage: 1.0
    status: running
    variants:
      - {{key: control, weight: 0.5, params: {{}}}}
      - {{key: lite, weight: 0.5, params: {{model_version: lgbm-v1-lite}}}}
"""


def write(path: Path, text: str, bump_ns: int) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump_ns))  # distinct mtime even on coarse clocks


def keys(config: ExperimentsConfig) -> list[str]:
    return [e.key for e in config.experiments]


async def test_valid_change_applies_invalid_change_is_refused_and_unchanged_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    write(path, GOOD.format(key="first"), 0)
    applied: list[ExperimentsConfig] = []
    metrics = Metrics(CollectorRegistry())
    reloader = ExperimentsReloader(
        path, lambda: {"lgbm-v1", "lgbm-v1-lite"}, applied.append, metrics.experiment_reloads
    )

    assert await reloader.reload_if_changed() is None
    write(path, GOOD.format(key="second"), 1_000_000)
    assert await reloader.reload_if_changed() is True
    assert keys(applied[-1]) == ["second"]

    write(path, GOOD.format(key="third").replace("lgbm-v1-lite", "no-such-model"), 2_000_000)
    assert await reloader.reload_if_changed() is False
    assert len(applied) == 1  # the refused file never reached the server
    assert metrics.registry.get_sample_value("encore_experiments_reloads_total", {"outcome": "rejected"}) == 1
    assert metrics.registry.get_sample_value("encore_experiments_reloads_total", {"outcome": "applied"}) == 1


async def test_watcher_picks_up_a_change_and_trigger_forces_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    write(path, GOOD.format(key="first"), 0)
    applied: list[ExperimentsConfig] = []
    metrics = Metrics(CollectorRegistry())
    reloader = ExperimentsReloader(
        path, lambda: {"lgbm-v1-lite"}, applied.append, metrics.experiment_reloads, interval_s=0.05
    )
    reloader.start()
    try:
        write(path, GOOD.format(key="second"), 1_000_000)
        for _ in range(100):
            if applied:
                break
            await asyncio.sleep(0.02)
        assert keys(applied[-1]) == ["second"]
        reloader.trigger()
        for _ in range(100):
            if len(applied) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(applied) == 2
    finally:
        await reloader.close()
