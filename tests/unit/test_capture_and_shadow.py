"""Capture sampling and framing; shadow scoring agreement as a side effect."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from encore.v1 import capture_pb2
from encore.v1 import ranking_pb2 as pb
from ranking.observer import NullObserver
from ranking.pipeline import PipelineExecutor
from ranking.scorers.onnx_ranker import OnnxRankerScorer
from ranking.side_effects.shadow_scoring import ShadowScoringSideEffect
from ranking.surfaces import home
from ranking.types import RankingParams
from serving.capture import CaptureFormatError, encode_delimited, in_capture_sample, read_captures
from tests.unit import fakes


def test_capture_cohort_is_deterministic_and_grows_with_the_fraction() -> None:
    users = [f"user-{i}" for i in range(5000)]
    at_10 = {u for u in users if in_capture_sample(u, 0.1)}
    at_30 = {u for u in users if in_capture_sample(u, 0.3)}
    assert at_10 <= at_30
    assert 400 < len(at_10) < 600 and 1300 < len(at_30) < 1700
    assert at_10 == {u for u in users if in_capture_sample(u, 0.1)}
    assert not any(in_capture_sample(u, 0.0) for u in users)
    assert all(in_capture_sample(u, 1.0) for u in users)


def record(i: int) -> capture_pb2.CapturedRank:
    message = capture_pb2.CapturedRank(ts_ms=1000 + i, server_latency_ms=1.5, status="OK")
    message.request.CopyFrom(pb.RankRequest(user_id=f"u{i}", surface=pb.SURFACE_HOME, limit=3))
    message.response.items.add(item_id=f"i{i}", score=0.5, position=0, source="ann")
    return message


def test_delimited_records_round_trip_across_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "captures-1.binpb").write_bytes(b"".join(encode_delimited(record(i)) for i in range(3)))
    (tmp_path / "captures-2.binpb").write_bytes(b"".join(encode_delimited(record(i)) for i in range(3, 300)))
    got = list(read_captures([tmp_path / "a", tmp_path / "captures-2.binpb"]))
    assert [m.request.user_id for m in got] == [f"u{i}" for i in range(300)]
    assert got[299].response.items[0].item_id == "i299"


def test_a_truncated_capture_file_names_the_offset(tmp_path: Path) -> None:
    data = b"".join(encode_delimited(record(i)) for i in range(2))
    path = tmp_path / "captures-x.binpb"
    path.write_bytes(data[:-3])
    second = len(encode_delimited(record(0)))
    with pytest.raises(CaptureFormatError, match=f"record at byte {second} needs"):
        list(read_captures([path]))


class RecordingShadowObserver:
    def __init__(self) -> None:
        self.agreements: list[tuple[str, str, float, float]] = []
        self.failures: list[tuple[str, str]] = []

    def shadow_agreement(self, surface: str, model: str, rbo: float, overlap_at_10: float) -> None:
        self.agreements.append((surface, model, rbo, overlap_at_10))

    def shadow_failed(self, surface: str, model: str) -> None:
        self.failures.append((surface, model))


class TwoModels:
    """A real ``run``-shaped session per model: 'same' reproduces the primary, 'reverse' negates it."""

    def __init__(self, sign: float) -> None:
        self._sign = sign

    def run(self, _outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self._sign * feeds["features"][:, 0:1]]


async def shadow_run(shadow: str) -> RecordingShadowObserver:
    observer = RecordingShadowObserver()
    sessions = {"primary": TwoModels(1.0), "same": TwoModels(1.0), "reverse": TwoModels(-1.0)}
    scorer = OnnxRankerScorer(sessions, dict.fromkeys(sessions, "features"), "primary", fakes.EXECUTOR)
    c = fakes.components(await fakes.seeded_store())
    c = replace(c, scorer=scorer, side_effects=(ShadowScoringSideEffect(scorer, c.selector, observer),))
    executor = PipelineExecutor(home.declare(c), NullObserver())
    params = RankingParams(retrieval_size=100, popularity_size=50, diversity_cap=2, shadow_model=shadow)
    query = fakes.query(params=params)
    result = await executor.execute(query, fakes.budget())
    assert result.model_version == "primary"  # the shadow never serves
    await executor.drain_side_effects()  # the executor scheduled the shadow scoring itself
    return observer


async def test_a_shadow_identical_to_the_primary_agrees_fully() -> None:
    observer = await shadow_run("same")
    assert observer.agreements == [("home", "same", pytest.approx(1.0), 1.0)]


async def test_a_reversed_shadow_disagrees() -> None:
    observer = await shadow_run("reverse")
    ((surface, model, rbo, overlap),) = observer.agreements
    assert (surface, model) == ("home", "reverse")
    assert rbo < 0.2 and overlap < 0.3


async def test_a_failing_shadow_is_counted_and_never_touches_the_answer() -> None:
    observer = await shadow_run("missing-model")
    assert observer.failures == [("home", "missing-model")]
    assert observer.agreements == []
