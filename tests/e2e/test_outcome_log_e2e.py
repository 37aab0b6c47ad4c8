"""Outcome log end to end: a real `encore serve` writes one line per accepted RecordEvents event, for
every user, on the exposure log's clock; refused events are not logged; the analysis reads it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
import pytest

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import ServerProcess, scrape_metric, start_server, stop_server
from offline.experiments.outcome_logs import load_exposures, load_outcomes
from tests.e2e.conftest import EXPERIMENTS

PLAY, SKIP, LIKE = pb.EVENT_TYPE_PLAY, pb.EVENT_TYPE_SKIP, pb.EVENT_TYPE_LIKE
METRIC = {PLAY: "stream", SKIP: "skip", LIKE: "like"}
#: Per user: Rank on Home first (then the user is exposed to home-model) and the events to record.
SCRIPT: list[tuple[str, bool, list[tuple[int, str, int]]]] = [
    ("u1", True, [(PLAY, "i00001", 1000), (LIKE, "i00002", 1001), (SKIP, "i00003", 1002)]),
    ("u2", True, [(SKIP, "i00004", 2000)]),
    ("u2", False, [(PLAY, "i00005", 2001)]),
    ("fresh-listener", False, [(PLAY, "i00006", 3000)]),  # never ranked: no exposure, still logged
]
REFUSED = [
    pb.RecordEventsRequest(user_id="u2", events=[pb.Event(type=PLAY, item_id="no-such-item", timestamp_ms=1)]),
    pb.RecordEventsRequest(  # one bad event refuses the whole request: its good event is not logged either
        user_id="u2",
        events=[pb.Event(type=PLAY, item_id="i00007", timestamp_ms=1), pb.Event(item_id="i00008", timestamp_ms=2)],
    ),
    pb.RecordEventsRequest(user_id="", events=[pb.Event(type=PLAY, item_id="i00009", timestamp_ms=1)]),
]
DEADLINE_S = 30.0


def strings(ids: Iterable[object]) -> list[str]:
    """Unit ids by code (a tuple or an Arrow string array, whose scalars print as their value)."""
    return [str(i) for i in ids]


def wait_for(condition: Callable[[], bool], what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {DEADLINE_S:g} s:\n{server.log()}")
        time.sleep(0.05)


def test_the_server_logs_every_accepted_event_as_an_outcome(tiny_bundle_path: Path, tmp_path: Path) -> None:
    experiments, outcome_dir = tmp_path / "experiments.yaml", tmp_path / "outs"
    experiments.write_text(EXPERIMENTS)
    server = start_server(
        tiny_bundle_path, tmp_path, "--experiments", str(experiments), "--outcome-log-dir", str(outcome_dir)
    )
    received: list[tuple[int, int]] = []  # per accepted event: the wall clock around its call, ms
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RankingServiceStub(channel)
            for user, rank, events in SCRIPT:
                if rank:
                    response = stub.Rank(pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME), timeout=10)
                    assert [a.experiment for a in response.assignments] == ["home-model"]
                before_ms = int(time.time() * 1000)
                request = pb.RecordEventsRequest(
                    user_id=user, events=[pb.Event(type=t, item_id=i, timestamp_ms=ts) for t, i, ts in events]
                )
                assert stub.RecordEvents(request, timeout=10).accepted == len(events)
                received += [(before_ms, int(time.time() * 1000))] * len(events)
            for refused in REFUSED:
                with pytest.raises(grpc.RpcError) as caught:
                    stub.RecordEvents(refused, timeout=10)
                assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        expected = {"stream": 3.0, "skip": 2.0, "like": 1.0}
        wait_for(
            lambda: all(scrape_metric(server, "encore_outcomes_total", metric=m) == n for m, n in expected.items()),
            "encore_outcomes_total reaching the accepted events",
            server,
        )
        for reason in ("queue_full", "write_error"):
            assert scrape_metric(server, "encore_outcomes_dropped_total", reason=reason) == 0
    finally:
        stop_server(server)
    assert server.process.returncode == 0, server.log()

    files = sorted(outcome_dir.iterdir())
    assert [re.fullmatch(r"outcomes-\d{8}T\d{6}Z-\d+-\d{5}\.jsonl", f.name) is not None for f in files] == [True]
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    wanted = [(user, METRIC[t], 1.0, item, ts) for user, _, events in SCRIPT for t, item, ts in events]
    assert [(r["unit_id"], r["metric"], r["value"], r["item_id"], r["event_ts_ms"]) for r in lines] == wanted
    assert all(set(r) == {"ts_ms", "unit_id", "metric", "value", "item_id", "event_ts_ms"} for r in lines)
    # ts_ms is the server's receive time, not the client's event timestamp
    assert all(lo <= r["ts_ms"] <= hi for r, (lo, hi) in zip(lines, received, strict=True))

    outcomes = load_outcomes([outcome_dir])
    assert outcomes.read.records == len(wanted) and outcomes.read.skipped == 0
    units = strings(outcomes.unit_ids)
    rows = [
        (units[u], outcomes.metrics[m], float(v))
        for u, m, v in zip(outcomes.unit.tolist(), outcomes.metric.tolist(), outcomes.value.tolist(), strict=True)
    ]
    assert rows == [(user, metric, value) for user, metric, value, _, _ in wanted]

    # same clock as the exposure log: every outcome of an exposed user is at or after its first exposure
    exposures = load_exposures([tmp_path / "exposures"])
    exposed = strings(exposures.unit_ids)
    first: dict[str, int] = {}
    for u, ts in zip(exposures.unit.tolist(), exposures.ts_ms.tolist(), strict=True):
        first[exposed[u]] = min(ts, first.get(exposed[u], ts))
    assert set(first) == {"u1", "u2"}
    assert all(r["ts_ms"] >= first[r["unit_id"]] for r in lines if r["unit_id"] in first)
