"""A serving process follows the experiments store: new valid revisions applied, invalid ones
refused, an unreachable store leaves the last good revision serving (and says so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from serving.experiments.config import ExperimentsConfig
from serving.experiments.follow import StoreFollower
from serving.experiments.store import FileExperimentStore, Revision, StoreUnavailable
from serving.metrics import Metrics


def document(cap: int, weights: tuple[float, float] = (0.5, 0.5)) -> dict[str, Any]:
    return {
        "experiments": [
            {
                "key": "home-cap",
                "surface": "home",
                "coverage": 1.0,
                "status": "running",
                "variants": [
                    {"key": "control", "weight": weights[0], "params": {"diversity_cap": 2}},
                    {"key": "treatment", "weight": weights[1], "params": {"diversity_cap": cap}},
                ],
            }
        ]
    }


class FlakyStore(FileExperimentStore):
    """A file store that can be switched off (unreachable)."""

    down = False

    async def head(self) -> int:
        if self.down:
            raise StoreUnavailable("store down")
        return await super().head()

    async def get(self, number: int) -> Revision:
        if self.down:
            raise StoreUnavailable("store down")
        return await super().get(number)


def follower(tmp_path: Path) -> tuple[StoreFollower, FlakyStore, list[ExperimentsConfig], Metrics]:
    store, applied, metrics = FlakyStore(tmp_path / "store"), [], Metrics(CollectorRegistry())
    f = StoreFollower(
        store,
        lambda: {"m1"},
        applied.append,
        reloads=metrics.experiment_reloads,
        revision_gauge=metrics.experiments_revision,
        store_up=metrics.experiments_store_up,
        propagation=metrics.experiments_propagation,
        clock=lambda: 4_000_000_000.0,  # far after any commit: the delay observed is clock - committed_at
    )
    return f, store, applied, metrics


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


async def test_each_new_valid_revision_is_applied_once(tmp_path: Path) -> None:
    f, store, applied, metrics = follower(tmp_path)
    assert await f.poll_once() is None and applied == []  # an empty store: nothing to apply
    await store.commit(0, document(3), "alice", "start")
    assert await f.poll_once() is True
    assert await f.poll_once() is None  # unchanged head: nothing re-applied
    assert len(applied) == 1 and applied[-1].all_experiments[0].key == "home-cap"
    assert f.revision == 1 and sample(metrics, "encore_experiments_revision") == 1
    assert sample(metrics, "encore_experiments_propagation_seconds_count") == 1
    assert sample(metrics, "encore_experiments_propagation_seconds_bucket", {"le": "30.0"}) == 0  # years late


async def test_an_invalid_revision_is_refused_and_the_previous_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f, store, applied, metrics = follower(tmp_path)
    await store.commit(0, document(3), "alice", "start")
    await f.poll_once()
    await store.commit(1, document(3, weights=(0.5, 0.7)), "bob", "oops")
    assert await f.poll_once() is False
    assert f.revision == 1 and len(applied) == 1
    assert "weights must sum to 1" in f.last_error
    assert sample(metrics, "encore_experiments_reloads_total", {"outcome": "rejected"}) == 1
    assert await f.poll_once() is None  # refused once, not on every poll


async def test_an_unreachable_store_keeps_the_last_good_revision_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f, store, _, metrics = follower(tmp_path)
    await store.commit(0, document(3), "alice", "start")
    await f.poll_once()
    store.down = True
    assert await f.poll_once() is False and await f.poll_once() is False
    assert f.revision == 1 and not f.reachable and sample(metrics, "encore_experiments_store_up") == 0
    unreachable = [r for r in caplog.records if r.getMessage().startswith("experiments store unreachable")]
    assert len(unreachable) == 1 and "still serving revision 1" in unreachable[0].getMessage()
    store.down = False
    await store.commit(1, document(4), "alice", "cap 4")
    assert await f.poll_once() is True and f.revision == 2 and sample(metrics, "encore_experiments_store_up") == 1
