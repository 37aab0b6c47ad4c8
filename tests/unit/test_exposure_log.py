"""Exposure log: JSONL lines, dedupe per (unit, experiment), rotation, drops counted never raised."""

from __future__ import annotations

import asyncio
import errno
import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from ranking.side_effects.exposure_log import ExposureEvent, ExposureLogSideEffect
from ranking.types import Assignment, RankResult
from serving.experiments.exposure_log import ExposureLog, exposure_files
from serving.logsink import RotatingFileWriter
from serving.metrics import Metrics
from tests.unit import fakes


def event(unit: str, experiment: str = "exp", variant: str = "control") -> ExposureEvent:
    return ExposureEvent(1, unit, experiment, variant, "home", "r", "m", "b")


def read_lines(directory: Path) -> list[dict[str, object]]:
    return [
        json.loads(line) for f in sorted(directory.glob("exposures-*.jsonl")) for line in f.read_text().splitlines()
    ]


def make_log(tmp_path: Path, metrics: Metrics, **kwargs: int) -> ExposureLog:
    max_bytes = kwargs.pop("max_bytes", 1 << 20)
    return ExposureLog(
        exposure_files(tmp_path, max_bytes=max_bytes),
        exposures=metrics.exposures,
        dropped=metrics.exposures_dropped,
        **kwargs,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_one_line_per_unit_and_experiment(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    exposure_log = make_log(tmp_path, metrics)
    exposure_log.start()
    exposure_log.offer([event("u1"), event("u1"), event("u2"), event("u1", experiment="other")])
    exposure_log.offer([event("u1")])
    await exposure_log.close()
    lines = read_lines(tmp_path)
    assert [(line["unit_id"], line["experiment"]) for line in lines] == [("u1", "exp"), ("u2", "exp"), ("u1", "other")]
    assert set(lines[0]) == {
        "ts_ms",
        "unit_id",
        "experiment",
        "variant",
        "surface",
        "request_id",
        "model_version",
        "bundle_version",
    }
    assert sample(metrics, "encore_exposures_total", experiment="exp", variant="control") == 2


async def test_files_rotate_and_no_line_is_lost(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    exposure_log = make_log(tmp_path, metrics, max_bytes=2_000)
    exposure_log.start()
    for batch in range(10):
        exposure_log.offer(event(f"u{batch}-{i}") for i in range(20))
        await asyncio.sleep(0)
    await exposure_log.close()
    assert len(list(tmp_path.glob("exposures-*.jsonl"))) > 3
    assert len(read_lines(tmp_path)) == 200


async def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    exposure_log = make_log(tmp_path, metrics, queue_size=5)  # not started: nothing drains the queue
    exposure_log.offer(event(f"u{i}") for i in range(8))
    assert sample(metrics, "encore_exposures_dropped_total", reason="queue_full") == 3
    exposure_log.start()
    await exposure_log.close()
    assert len(read_lines(tmp_path)) == 5


class FullDiskWriter(RotatingFileWriter):
    def write_records(self, records: list[bytes]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_full_disk_drops_and_counts_and_keeps_running(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    writer = FullDiskWriter(tmp_path, prefix="exposures", suffix=".jsonl")
    exposure_log = ExposureLog(writer, exposures=metrics.exposures, dropped=metrics.exposures_dropped)
    exposure_log.start()
    exposure_log.offer(event(f"u{i}") for i in range(4))
    await asyncio.sleep(0.05)
    exposure_log.offer([event("late")])
    await exposure_log.close()
    assert sample(metrics, "encore_exposures_dropped_total", reason="write_error") == 5


async def test_side_effect_offers_only_exposed_assignments() -> None:
    offered: list[ExposureEvent] = []

    class Sink:
        def offer(self, events: object) -> None:
            offered.extend(events)  # type: ignore[call-overload]

    effect = ExposureLogSideEffect(Sink(), "bundle-1")
    from dataclasses import replace

    query = replace(
        fakes.query(user_id="u9"),
        assignments=(Assignment("a", "v1"), Assignment("b", "forced", exposed=False)),
    )
    assert effect.enabled(query)
    assert not effect.enabled(fakes.query())
    await effect.run(query, RankResult((), "lgbm-v1", (), {}, {}))
    assert [(e.unit_id, e.experiment, e.variant, e.model_version, e.bundle_version) for e in offered] == [
        ("u9", "a", "v1", "lgbm-v1", "bundle-1")
    ]


async def test_a_dropped_exposure_is_logged_again_on_the_users_next_request(tmp_path: Path) -> None:
    class FlakyDisk(RotatingFileWriter):
        fail = True

        def write_records(self, records: list[bytes]) -> None:
            if self.fail:
                raise OSError(errno.ENOSPC, "No space left on device")
            super().write_records(records)

    metrics = Metrics(CollectorRegistry())
    writer = FlakyDisk(tmp_path, prefix="exposures", suffix=".jsonl")
    exposure_log = ExposureLog(writer, exposures=metrics.exposures, dropped=metrics.exposures_dropped)
    exposure_log.start()
    exposure_log.offer([event("u1")])
    await asyncio.sleep(0.05)
    writer.fail = False
    exposure_log.offer([event("u1")])  # same unit and experiment: logged now that the first was lost
    await exposure_log.close()
    assert [line["unit_id"] for line in read_lines(tmp_path)] == ["u1"]
    assert sample(metrics, "encore_exposures_total", experiment="exp", variant="control") == 1
    assert sample(metrics, "encore_exposures_dropped_total", reason="write_error") == 1
