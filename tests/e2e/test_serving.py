"""End to end over gRPC: both surfaces, RecordEvents, bad input, health, reflection, metrics, Redis faults."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, start_server, stop_server
from models.bundle import load_bundle
from serving.experiments.assignment import Assigner
from serving.experiments.config import parse_experiments
from tests.e2e.conftest import EXPERIMENTS


def rank(stub: pb_grpc.RankingServiceStub, **fields: object) -> pb.RankResponse:
    fields.setdefault("surface", pb.SURFACE_HOME)
    return stub.Rank(pb.RankRequest(**fields), timeout=5)  # type: ignore[arg-type]


def test_home_ranks_a_known_user_with_the_model(stub: pb_grpc.RankingServiceStub, tiny_bundle_path: Path) -> None:
    response = rank(stub, user_id="u3", limit=12, request_id="req-1", debug=True)
    assert response.request_id == "req-1"
    assert len(response.items) == 12
    assert [i.position for i in response.items] == list(range(12))
    assert list(response.degraded) == []
    assert response.model_version in {"linear-v1", "linear-v2"}
    assert response.bundle_version == load_bundle(tiny_bundle_path).version
    assert {t.stage for t in response.timings} >= {"user_features", "retrieval", "scoring", "total"}
    assert "ann" in {i.source for i in response.items}


def test_surface_default_limit_applies_when_limit_is_zero(stub: pb_grpc.RankingServiceStub) -> None:
    assert len(rank(stub, user_id="u3").items) == 20
    assert len(rank(stub, user_id="u3", surface=pb.SURFACE_NOW_PLAYING, seed_item_id="i00001").items) == 10


def test_experiment_variant_switches_the_model_version(stub: pb_grpc.RankingServiceStub) -> None:
    assigner = Assigner(parse_experiments(yaml.safe_load(EXPERIMENTS), "test"))
    seen = set()
    for n in range(30):
        user = f"u{n}"
        response = rank(stub, user_id=user)
        expected = assigner.assign(user, "home").assignments
        assert [(a.experiment, a.variant) for a in response.assignments] == [
            (a.experiment, a.variant) for a in expected
        ]
        variant = expected[0].variant
        assert response.model_version == ("linear-v2" if variant == "v2" else "linear-v1")
        seen.add(variant)
    assert seen == {"control", "v2"}
    # Now Playing has no experiment
    assert list(rank(stub, user_id="u1", surface=pb.SURFACE_NOW_PLAYING, seed_item_id="i00002").assignments) == []


def test_now_playing_never_returns_the_seed_or_recent_plays(stub: pb_grpc.RankingServiceStub) -> None:
    seed = "i00042"
    before = rank(stub, user_id="listener-1", surface=pb.SURFACE_NOW_PLAYING, seed_item_id=seed, limit=30)
    assert seed not in {i.item_id for i in before.items}
    played = [i.item_id for i in before.items[:4]]
    events = [pb.Event(type=pb.EVENT_TYPE_PLAY, item_id=item, timestamp_ms=1000 + n) for n, item in enumerate(played)]
    ack = stub.RecordEvents(pb.RecordEventsRequest(user_id="listener-1", events=events), timeout=5)
    assert ack.accepted == 4
    after = rank(stub, user_id="listener-1", surface=pb.SURFACE_NOW_PLAYING, seed_item_id=seed, limit=30)
    assert not set(played) & {i.item_id for i in after.items}
    assert seed not in {i.item_id for i in after.items}


def test_recorded_plays_give_a_cold_user_personalised_home_results(stub: pb_grpc.RankingServiceStub) -> None:
    cold = rank(stub, user_id="brand-new-user")
    assert {i.source for i in cold.items} == {"popularity"}
    stub.RecordEvents(
        pb.RecordEventsRequest(user_id="brand-new-user", events=[pb.Event(type=pb.EVENT_TYPE_PLAY, item_id="i00100")]),
        timeout=5,
    )
    warm = rank(stub, user_id="brand-new-user")
    assert "ann" in {i.source for i in warm.items}


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "x" * 129}, "user_id"),
        ({"user_id": "u1", "surface": 0}, "surface"),
        ({"user_id": "u1", "surface": 7}, "surface"),
        ({"user_id": "u1", "surface": pb.SURFACE_NOW_PLAYING}, "seed_item_id"),
        ({"user_id": "u1", "surface": pb.SURFACE_NOW_PLAYING, "seed_item_id": "nope"}, "seed_item_id"),
        ({"user_id": "u1", "limit": 101}, "limit"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(
    stub: pb_grpc.RankingServiceStub, fields: dict[str, object], field_name: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        rank(stub, **fields)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field_name}:")
    assert len(rank(stub, user_id="u1").items) == 20  # still serving


def test_bad_events_are_invalid_argument_naming_the_field(stub: pb_grpc.RankingServiceStub) -> None:
    cases = [
        (pb.RecordEventsRequest(user_id="u1"), "events"),
        (
            pb.RecordEventsRequest(user_id="u1", events=[pb.Event(type=pb.EVENT_TYPE_PLAY, item_id="zzz")]),
            "events[0].item_id",
        ),
        (pb.RecordEventsRequest(user_id="u1", events=[pb.Event(item_id="i00001")]), "events[0].type"),
        (pb.RecordEventsRequest(user_id="u1", events=[pb.Event(type=1, item_id="i00001")] * 101), "events"),
    ]
    for request, field_name in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stub.RecordEvents(request, timeout=5)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(f"{field_name}:"), caught.value.details()


def test_health_and_reflection_are_served(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "encore.v1.RankingService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for reply in replies for s in reply.list_services_response.service}
        assert {"encore.v1.RankingService", "grpc.health.v1.Health"} <= names


def test_metrics_endpoint_reports_requests_stages_filters_and_bundle(
    stub: pb_grpc.RankingServiceStub, server: ServerProcess
) -> None:
    rank(stub, user_id="u5", surface=pb.SURFACE_NOW_PLAYING, seed_item_id="i00003")
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert 'encore_requests_total{method="Rank",outcome="OK",surface="now_playing"}' in text
    assert 'encore_stage_duration_seconds_bucket{le="0.001",stage="scoring",surface="now_playing"}' in text
    assert 'encore_filtered_candidates_total{filter="seed_item",surface="now_playing"}' in text
    assert 'outcome="INVALID_ARGUMENT"' in text
    assert "encore_bundle_info{" in text


def test_redis_stopped_mid_run_degrades_answers_instead_of_failing(
    stub: pb_grpc.RankingServiceStub, redis_for_server: RedisProcess
) -> None:
    assert list(rank(stub, user_id="u2").degraded) == []
    redis_for_server.stop()
    try:
        for surface, seed in ((pb.SURFACE_HOME, ""), (pb.SURFACE_NOW_PLAYING, "i00009")):
            for _ in range(5):
                response = rank(stub, user_id="u2", surface=surface, seed_item_id=seed)
                assert list(response.degraded) == ["user_features"]
                assert len(response.items) > 0
        with pytest.raises(grpc.RpcError) as caught:
            stub.RecordEvents(
                pb.RecordEventsRequest(user_id="u2", events=[pb.Event(type=pb.EVENT_TYPE_PLAY, item_id="i00001")]),
                timeout=5,
            )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        redis_for_server.start()
    # the restarted Redis is empty: the user is cold, but nothing is degraded any more
    assert list(rank(stub, user_id="u2").degraded) == []


def test_embedded_store_serves_without_redis(tiny_bundle_path: Path, tmp_path: Path) -> None:
    proc = start_server(tiny_bundle_path, tmp_path)
    try:
        with grpc.insecure_channel(proc.target) as channel:
            response = rank(pb_grpc.RankingServiceStub(channel), user_id="u4")
        assert len(response.items) == 20 and list(response.degraded) == []
        assert "ann" in {i.source for i in response.items}  # u4 is in the bundle's snapshot
    finally:
        stop_server(proc)


def test_a_corrupt_bundle_is_refused_at_start_up(tiny_bundle_path: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle_path, broken)
    (broken / "item_vectors.npy").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        start_server(broken, tmp_path)
