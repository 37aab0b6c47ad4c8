"""Outcome log: JSONL lines the analysis reads, counted by metric, drops counted never raised, and
RecordEvents offering exactly the events the store accepted."""

from __future__ import annotations

import asyncio
import errno
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest
from prometheus_client import CollectorRegistry

from encore.v1 import ranking_pb2 as pb
from features.store import FeatureStoreTimeout
from offline.experiments.outcome_logs import load_outcomes
from serving.config import load_settings
from serving.experiments.outcome_log import OutcomeEvent, OutcomeLog, encode_outcome, outcome_files
from serving.logsink import RotatingFileWriter
from serving.metrics import Metrics
from serving.request_context import bind_request_id
from serving.servicer import RankingServicer
from tests.unit import fakes


def event(unit: str, metric: str = "stream", item: str = "i1", ts_ms: int = 5_000) -> OutcomeEvent:
    return OutcomeEvent(ts_ms, unit, metric, 1.0, item, 4_000)


def read_lines(directory: Path) -> list[dict[str, object]]:
    return [json.loads(line) for f in sorted(directory.glob("outcomes-*.jsonl")) for line in f.read_text().splitlines()]


def make_log(directory: Path, metrics: Metrics, **kwargs: int) -> OutcomeLog:
    max_bytes = kwargs.pop("max_bytes", 1 << 20)
    return OutcomeLog(
        outcome_files(directory, max_bytes=max_bytes),
        outcomes=metrics.outcomes,
        dropped=metrics.outcomes_dropped,
        **kwargs,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_line_is_the_analysis_format_with_the_extra_fields_and_surface_only_when_known() -> None:
    assert encode_outcome(OutcomeEvent(1_763_870_001_000, "u42", "stream", 1.0, "t123", 1_763_870_000_950)) == (
        b'{"ts_ms":1763870001000,"unit_id":"u42","metric":"stream","value":1.0,'
        b'"item_id":"t123","event_ts_ms":1763870000950}\n'
    )
    with_surface = json.loads(encode_outcome(OutcomeEvent(1, "u", "like", 1.0, "t", 0, surface="home")))
    assert with_surface["surface"] == "home"


async def test_every_event_is_one_line_counted_by_metric_and_read_by_the_analysis(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    outcome_log = make_log(tmp_path, metrics)
    outcome_log.start()
    outcome_log.offer([event("u1"), event("u1"), event("u2", "skip"), event("u1", "like")])  # no dedupe
    await outcome_log.close()
    assert [(line["unit_id"], line["metric"]) for line in read_lines(tmp_path)] == [
        ("u1", "stream"),
        ("u1", "stream"),
        ("u2", "skip"),
        ("u1", "like"),
    ]
    (name,) = [p.name for p in tmp_path.iterdir()]
    assert re.fullmatch(r"outcomes-\d{8}T\d{6}Z-\d+-00001\.jsonl", name), name
    outcomes = load_outcomes([tmp_path])
    assert len(outcomes) == 4 and outcomes.read.skipped == 0
    assert sorted(outcomes.metrics) == ["like", "skip", "stream"]
    assert outcomes.ts_ms.tolist() == [5_000] * 4
    for metric, n in (("stream", 2), ("skip", 1), ("like", 1)):
        assert sample(metrics, "encore_outcomes_total", metric=metric) == n


async def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    outcome_log = make_log(tmp_path, metrics, queue_size=5)  # not started: nothing drains the queue
    outcome_log.offer(event(f"u{i}") for i in range(8))
    assert sample(metrics, "encore_outcomes_dropped_total", reason="queue_full") == 3
    outcome_log.start()
    await outcome_log.close()
    assert [line["unit_id"] for line in read_lines(tmp_path)] == [f"u{i}" for i in range(5)]
    assert sample(metrics, "encore_outcomes_total", metric="stream") == 5


async def test_a_failed_write_drops_and_counts_and_keeps_running(tmp_path: Path) -> None:
    class FlakyDisk(RotatingFileWriter):
        fail = True

        def write_records(self, records: list[bytes]) -> None:
            if self.fail:
                raise OSError(errno.ENOSPC, "No space left on device")
            super().write_records(records)

    metrics = Metrics(CollectorRegistry())
    writer = FlakyDisk(tmp_path, prefix="outcomes", suffix=".jsonl")
    outcome_log = OutcomeLog(writer, outcomes=metrics.outcomes, dropped=metrics.outcomes_dropped)
    outcome_log.start()
    outcome_log.offer(event(f"lost{i}") for i in range(3))
    deadline = asyncio.get_running_loop().time() + 10
    while sample(metrics, "encore_outcomes_dropped_total", reason="write_error") < 3:
        assert asyncio.get_running_loop().time() < deadline, "the failed write was never counted"
        await asyncio.sleep(0.01)
    writer.fail = False
    outcome_log.offer([event("kept")])
    await outcome_log.close()
    assert [line["unit_id"] for line in read_lines(tmp_path)] == ["kept"]
    assert sample(metrics, "encore_outcomes_total", metric="stream") == 1


# --- RecordEvents offers what the store accepted ------------------------------------------------


class Store:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def record_events(self, user_id: str, plays: Any, skips: Any, timeout_s: float) -> None:
        if self.fail:
            raise FeatureStoreTimeout("no answer")


class Sink:
    def __init__(self) -> None:
        self.events: list[OutcomeEvent] = []

    def offer(self, events: Any) -> None:
        self.events.extend(events)


class Aborted(Exception):
    pass


class Context:
    def cancelled(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise Aborted(code.name)


def record(request: pb.RecordEventsRequest, store: Store) -> tuple[list[OutcomeEvent], str]:
    sink = Sink()
    app = SimpleNamespace(
        settings=load_settings(Path("b")),
        metrics=Metrics(CollectorRegistry()),
        bundle=SimpleNamespace(catalog=SimpleNamespace(index_of=fakes.INDEX_OF)),
        store=store,
        store_timeout_s=0.05,
        outcomes=sink,
    )
    status = "OK"
    with bind_request_id("r1"):
        try:
            asyncio.run(RankingServicer(cast(Any, app)).RecordEvents(request, cast(Any, Context())))
        except Aborted as exc:
            status = str(exc)
    return sink.events, status


def test_record_events_offers_one_outcome_per_accepted_event_stamped_with_the_server_clock() -> None:
    items = fakes.ITEM_IDS
    request = pb.RecordEventsRequest(
        user_id="u1",
        events=[
            pb.Event(type=pb.EVENT_TYPE_PLAY, item_id=items[0], timestamp_ms=30),
            pb.Event(type=pb.EVENT_TYPE_LIKE, item_id=items[1], timestamp_ms=10),
            pb.Event(type=pb.EVENT_TYPE_SKIP, item_id=items[2], timestamp_ms=20),
        ],
    )
    events, status = record(request, Store())
    assert status == "OK"
    assert [(e.unit_id, e.metric, e.value, e.item_id, e.event_ts_ms, e.surface) for e in events] == [
        ("u1", "stream", 1.0, items[0], 30, None),
        ("u1", "like", 1.0, items[1], 10, None),
        ("u1", "skip", 1.0, items[2], 20, None),
    ]
    assert len({e.ts_ms for e in events}) == 1 and events[0].ts_ms > 1_000_000_000_000  # receive time, epoch ms


@pytest.mark.parametrize(
    ("request_", "store", "status"),
    [
        (
            pb.RecordEventsRequest(user_id="u1", events=[pb.Event(type=pb.EVENT_TYPE_PLAY, item_id="nope")]),
            Store(),
            "INVALID_ARGUMENT",
        ),
        (
            pb.RecordEventsRequest(
                user_id="u1",
                events=[
                    pb.Event(type=pb.EVENT_TYPE_PLAY, item_id=fakes.ITEM_IDS[0]),
                    pb.Event(item_id=fakes.ITEM_IDS[1]),
                ],
            ),
            Store(),
            "INVALID_ARGUMENT",
        ),
        (
            pb.RecordEventsRequest(user_id="u1", events=[pb.Event(type=pb.EVENT_TYPE_PLAY, item_id=fakes.ITEM_IDS[0])]),
            Store(fail=True),
            "UNAVAILABLE",
        ),
    ],
    ids=["unknown-item", "one-bad-event-refuses-all", "store-write-failed"],
)
def test_refused_or_unwritten_events_are_not_logged(
    request_: pb.RecordEventsRequest, store: Store, status: str
) -> None:
    assert record(request_, store) == ([], status)
