"""RecordEvents names the client's deadline, not the feature store, when the deadline ran out first."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest
from prometheus_client import CollectorRegistry

from encore.v1 import ranking_pb2 as pb
from features.store import FeatureStoreTimeout
from serving.config import load_settings
from serving.metrics import Metrics
from serving.request_context import bind_request_id
from serving.servicer import RankingServicer
from tests.unit import fakes

STORE_TIMEOUT_S = 0.05


class TimingOutStore:
    def __init__(self) -> None:
        self.timeouts: list[float] = []

    async def record_events(self, user_id: str, plays: Any, skips: Any, timeout_s: float) -> None:
        self.timeouts.append(timeout_s)
        raise FeatureStoreTimeout(f"no answer within {timeout_s * 1000:.0f} ms")


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    remaining: float | None

    def cancelled(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return self.remaining

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise Aborted(code, message)


def _record(remaining: float | None) -> tuple[Aborted, TimingOutStore]:
    store = TimingOutStore()
    app = SimpleNamespace(
        settings=load_settings(Path("b")),
        metrics=Metrics(CollectorRegistry()),
        bundle=SimpleNamespace(catalog=SimpleNamespace(index_of=fakes.INDEX_OF)),
        store=store,
        store_timeout_s=STORE_TIMEOUT_S,
    )
    request = pb.RecordEventsRequest(
        user_id="u1", events=[pb.Event(item_id=fakes.ITEM_IDS[0], type=pb.EVENT_TYPE_PLAY, timestamp_ms=1)]
    )
    servicer = RankingServicer(cast(Any, app))
    with bind_request_id("r1"), pytest.raises(Aborted) as caught:
        asyncio.run(servicer.RecordEvents(request, cast(Any, Context(remaining))))
    return caught.value, store


def test_a_store_timeout_inside_a_too_short_client_deadline_is_deadline_exceeded() -> None:
    aborted, store = _record(remaining=0.01)
    assert aborted.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "client's deadline" in str(aborted)
    assert store.timeouts == [pytest.approx(0.01)]


@pytest.mark.parametrize("remaining", [None, 1.0])
def test_a_store_timeout_within_the_clients_deadline_is_unavailable(remaining: float | None) -> None:
    aborted, store = _record(remaining=remaining)
    assert aborted.code is grpc.StatusCode.UNAVAILABLE
    assert store.timeouts == [STORE_TIMEOUT_S]
