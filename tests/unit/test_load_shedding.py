"""Past the in-flight limit the servicer refuses at once (RESOURCE_EXHAUSTED), never queues."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from prometheus_client import CollectorRegistry

from serving.config import load_settings
from serving.errors import Overloaded, status_for
from serving.metrics import Metrics
from serving.servicer import RankingServicer


class StubApp:
    def __init__(self, limit: int) -> None:
        from dataclasses import replace

        self.settings = replace(load_settings(Path("b")), max_in_flight=limit)
        self.metrics = Metrics(CollectorRegistry())
        self.in_flight = 0


def test_requests_past_the_limit_are_shed_and_counted_and_slots_are_returned() -> None:
    app = StubApp(limit=2)
    servicer = RankingServicer(cast(Any, app))
    with servicer._admitted("Rank"), servicer._admitted("Rank"):
        with pytest.raises(Overloaded) as caught, servicer._admitted("Rank"):
            pass
        assert status_for(caught.value)[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    with servicer._admitted("Rank"), servicer._admitted("RecordEvents"):  # both slots free again
        pass
    assert app.metrics.registry.get_sample_value("encore_shed_requests_total", {"method": "Rank"}) == 1


def test_a_failing_request_gives_its_slot_back() -> None:
    servicer = RankingServicer(cast(Any, StubApp(limit=1)))
    with pytest.raises(ValueError), servicer._admitted("Rank"):
        raise ValueError("boom")
    with servicer._admitted("Rank"):
        pass
