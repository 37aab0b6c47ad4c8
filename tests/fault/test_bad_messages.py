"""Malformed and oversized gRPC messages, and fuzzed field values (hypothesis), against one server.

Bytes that do not parse are refused as INVALID_ARGUMENT before the servicer runs; a message over
the 1 MiB receive limit by gRPC's transport; any message that parses is either answered or refused as INVALID_ARGUMENT
naming the field — never INTERNAL or UNKNOWN — and the server keeps serving throughout.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import RedisProcess, ServerProcess, start_server
from tests.e2e.conftest import EXPERIMENTS
from tests.fault.conftest import Reporter, finish, health
from tests.fault.load import Load
from tests.fault.report import FaultReport, summarise

RANK = "/encore.v1.RankingService/Rank"
RECORD_EVENTS = "/encore.v1.RankingService/RecordEvents"
MIB = 1 << 20
# The server decodes requests leniently (serving.server.add_ranking_service): undecodable bytes are
# the client's fault, answered INVALID_ARGUMENT "request: ..." without a traceback in the log.
DESERIALIZER_CODES = {"INVALID_ARGUMENT"}
FIELD = re.compile(r"^(user_id|surface|seed_item_id|limit|request_id|events|events\[\d+\]\.(item_id|type)): ")
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def server(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Redis-backed, with a Home experiment and every exchange captured: fuzzed ids reach every side effect."""
    tmp = tmp_path_factory.mktemp("bad-messages")
    redis = RedisProcess()
    redis.start()
    (tmp / "experiments.yaml").write_text(EXPERIMENTS)
    (tmp / "settings.yaml").write_text("redis_timeout_ms: 1000\ncapture_fraction: 1.0\n")  # no timeouts: exact codes
    try:
        proc = start_server(
            tiny_bundle_path,
            tmp,
            *("--redis-url", redis.url, "--load-features", "--config", str(tmp / "settings.yaml")),
            *("--experiments", str(tmp / "experiments.yaml"), "--capture-dir", str(tmp / "captures")),
        )
        yield proc
        # nothing wedged: still SERVING, a clean exit, and no traceback in the log at all
        finish(proc)
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    # the client may send more than the server accepts
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 8 * MIB)]) as ch:
        yield ch


def call_raw(channel: grpc.Channel, method: str, payload: bytes) -> tuple[str, str]:
    """Send ``payload`` as the request bytes; (status code name, details)."""
    raw = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        raw(payload, timeout=5)
        return "OK", ""
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""


def valid_rank_bytes() -> bytes:
    request = pb.RankRequest(user_id="u1", surface=pb.SURFACE_HOME, limit=5, request_id="r-1")
    return request.SerializeToString()


# (name, method, bytes, what must come back: "parse" = gRPC's deserializer refuses it)
MALFORMED: list[tuple[str, str, bytes, str]] = [
    ("invalid tag (wire type 7)", RANK, b"\xff" * 16, "parse"),
    ("truncated RankRequest", RANK, valid_rank_bytes()[:3], "parse"),
    ("length prefix past the end", RANK, b"\x0a\xff\xff\xff\x0f" + b"u1", "parse"),
    ("invalid UTF-8 in user_id", RANK, b"\x0a\x02\xc3\x28\x10\x01", "parse"),
    ("garbage inside context", RANK, b"\x0a\x02u1\x10\x01\x2a\x03\xff\xff\xff", "parse"),
    ("truncated varint", RANK, b"\x0a\x02u1\x10\xff\xff", "parse"),
    ("garbage RecordEvents", RECORD_EVENTS, b"\x12\x05\x08\xff\xff\xff\xff", "parse"),
    ("empty message", RANK, b"", "surface: "),
    ("unknown fields only", RANK, b"\x10\x01\xf8\x07\x01\x82\x08\x03abc", "user_id: "),
    ("user_id sent as a varint", RANK, b"\x08\x01\x10\x01", "user_id: "),
    ("surface 2**31-1", RANK, b"\x0a\x02u1\x10\xff\xff\xff\xff\x07", "surface: "),
    ("negative surface", RANK, b"\x0a\x02u1" + b"\x10" + b"\xff" * 9 + b"\x01", "surface: "),
]


def test_malformed_and_oversized_messages_are_refused_by_grpc_and_serving_goes_on(
    server: ServerProcess, channel: grpc.Channel, reporter: Reporter
) -> None:
    details: list[str] = []
    parse_codes: Counter[str] = Counter()
    with Load(server.target, rate=100, tag="bad-bytes") as load:
        load.wait_for_samples(30)
        for name, method, payload, expect in MALFORMED:
            code, message = call_raw(channel, method, payload)
            details.append(f"  {name:<28} → {code}: {message[:70]}")
            if expect == "parse":
                assert code in DESERIALIZER_CODES, (name, code, message)
                assert message.startswith("request: not a valid encore.v1."), message
                parse_codes[code] += 1
            else:
                assert code == "INVALID_ARGUMENT" and message.startswith(expect), (name, code, message)
        oversized = [
            ("2 MiB user_id", RANK, pb.RankRequest(user_id="x" * (2 * MIB), surface=pb.SURFACE_HOME)),
            (
                "2 MiB item_id in RecordEvents",
                RECORD_EVENTS,
                pb.RecordEventsRequest(user_id="u1", events=[pb.Event(type=pb.EVENT_TYPE_PLAY, item_id="i" * 2 * MIB)]),
            ),
        ]
        for name, method, message_ in oversized:
            code, message = call_raw(channel, method, message_.SerializeToString())
            details.append(f"  {name:<28} → {code}: {message[:70]}")
            assert code == "RESOURCE_EXHAUSTED", (name, code, message)
        # just under the limit: it arrives, and the service itself refuses it, naming the field
        near = pb.RankRequest(user_id="x" * (MIB - 64), surface=pb.SURFACE_HOME).SerializeToString()
        code, message = call_raw(channel, RANK, near)
        details.append(f"  {'1 MiB - 64 B user_id':<28} → {code}: {message[:70]}")
        assert code == "INVALID_ARGUMENT" and message.startswith("user_id: "), (code, message)
        load.wait_for_samples(30)
    print("\n" + "\n".join(details))
    n_parse = sum(1 for m in MALFORMED if m[3] == "parse")
    reporter.add(
        FaultReport(
            f"{n_parse} unparseable payloads",
            sent=n_parse,
            ok=0,
            errors={f"raw {code}": n for code, n in sorted(parse_codes.items())},
            note="refused before the servicer: INVALID_ARGUMENT request:",
        )
    )
    reporter.add(FaultReport("2 oversized messages (2 MiB)", sent=2, ok=0, errors={"raw RESOURCE_EXHAUSTED": 2}))
    report = reporter.add(summarise("  load meanwhile", load.samples()))
    assert report.error_count == 0, report
    assert health(server) == 1  # SERVING


# -- fuzzing -----------------------------------------------------------------------------------

KNOWN_ITEMS = st.integers(0, 399).map(lambda n: f"i{n:05d}")
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
IDS = st.one_of(
    st.sampled_from([f"u{n}" for n in range(50)]),  # known users (features in Redis)
    TEXT.filter(lambda s: bool(s.strip())),
    TEXT,  # unicode, empty, control characters, braces …
    st.text(st.characters(codec="utf-8"), min_size=120, max_size=140),  # around the 128-character limit
    st.integers(129, 200_000).map(lambda n: "é" * n),  # very long
    st.sampled_from(["", " ", "\t\n", "\x00", "}", "{u1}", "}u1{", "🎵" * 128, "🎵" * 129]),
)
ITEM_IDS = st.one_of(KNOWN_ITEMS, TEXT, st.integers(257, 5000).map(lambda n: "i" * n))
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)


def mostly(valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values about two times in three, so fuzzing also reaches the ranking and the store."""
    return st.one_of(valid, valid, anything)


VALID_IDS = st.one_of(
    st.sampled_from([f"u{n}" for n in range(50)]),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=128).filter(lambda s: bool(s.strip())),
)
RANK_FIELDS = [None, "user_id", "surface", "seed_item_id", "limit", "request_id"]


@st.composite
def rank_requests(draw: st.DrawFn) -> pb.RankRequest:
    """Valid requests (odd but legal values) with at most one field drawn from anything at all."""
    fuzzed = draw(st.sampled_from(RANK_FIELDS))

    def field(name: str, valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> Any:
        return draw(anything if name == fuzzed else valid)

    return pb.RankRequest(
        user_id=field("user_id", VALID_IDS, IDS),
        surface=field("surface", st.sampled_from([pb.SURFACE_HOME, pb.SURFACE_NOW_PLAYING]), INT32),
        seed_item_id=field("seed_item_id", KNOWN_ITEMS, st.one_of(st.just(""), ITEM_IDS)),
        limit=field("limit", st.integers(0, 50), st.integers(0, 2**32 - 1)),
        context=pb.RequestContext(device=draw(TEXT), locale=draw(TEXT), client_timestamp_ms=draw(INT64)),
        request_id=field(
            "request_id",
            st.one_of(st.just(""), st.text(st.characters(codec="utf-8"), max_size=128)),
            st.one_of(TEXT, st.integers(120, 300).map(lambda n: "r" * n)),
        ),
        debug=draw(st.booleans()),
    )


EVENTS = st.builds(
    pb.Event,
    type=mostly(st.sampled_from([pb.EVENT_TYPE_PLAY, pb.EVENT_TYPE_SKIP, pb.EVENT_TYPE_LIKE]), INT32),
    item_id=mostly(KNOWN_ITEMS, ITEM_IDS),
    timestamp_ms=INT64,
)
VALID_EVENTS = st.builds(
    pb.Event,
    type=st.sampled_from([pb.EVENT_TYPE_PLAY, pb.EVENT_TYPE_SKIP, pb.EVENT_TYPE_LIKE]),
    item_id=KNOWN_ITEMS,
    timestamp_ms=INT64,
)


@st.composite
def event_batches(draw: st.DrawFn) -> pb.RecordEventsRequest:
    events = st.one_of(
        st.lists(VALID_EVENTS, min_size=1, max_size=5),
        st.lists(EVENTS, max_size=5),
        st.lists(VALID_EVENTS, min_size=95, max_size=105),  # around the 100-event limit
    )
    return pb.RecordEventsRequest(user_id=draw(IDS), events=draw(events), request_id=draw(mostly(st.just(""), TEXT)))


def check_answer(call: str, codes: Counter[str], run: object) -> None:
    try:
        run()  # type: ignore[operator]
        codes[f"{call} OK"] += 1
    except grpc.RpcError as exc:
        code, message = exc.code().name, exc.details() or ""
        codes[f"{call} {code}"] += 1
        assert code == "INVALID_ARGUMENT", (code, message)
        field = FIELD.match(message)
        assert field, message
        codes[f"  {call} {field.group(1)}"] += 1  # the breakdown by field (not a request)


def fuzz_report(name: str, codes: Counter[str], seconds: float) -> FaultReport:
    by_field = {key.strip(): n for key, n in sorted(codes.items()) if key.startswith(" ")}
    print(f"\n{name}: INVALID_ARGUMENT by field: {by_field}")
    answers = {key: n for key, n in codes.items() if not key.startswith(" ")}
    ok = sum(n for key, n in answers.items() if key.endswith(" OK"))
    errors = {key: n for key, n in sorted(answers.items()) if not key.endswith(" OK")}
    return FaultReport(name, sent=sum(answers.values()), ok=ok, errors=errors, note=f"{seconds:.1f} s")


def test_fuzzed_rank_requests_are_answered_or_refused_naming_the_field(
    server: ServerProcess, reporter: Reporter
) -> None:
    codes: Counter[str] = Counter()
    started = time.monotonic()
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)

        @FUZZ
        @given(request=rank_requests())
        def fuzz(request: pb.RankRequest) -> None:
            def run() -> None:
                reply = stub.Rank(request, timeout=5)
                assert len(reply.items) <= (request.limit or 20)
                assert [item.position for item in reply.items] == list(range(len(reply.items)))
                if request.request_id:
                    assert reply.request_id == request.request_id

            check_answer("Rank", codes, run)

        fuzz()
    reporter.add(fuzz_report("fuzzed Rank (hypothesis)", codes, time.monotonic() - started))
    assert codes["Rank OK"] > 0 and codes["Rank INVALID_ARGUMENT"] > 0
    assert health(server) == 1


def test_fuzzed_event_batches_are_recorded_or_refused_naming_the_field(
    server: ServerProcess, reporter: Reporter
) -> None:
    codes: Counter[str] = Counter()
    started = time.monotonic()
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)

        @FUZZ
        @given(request=event_batches(), surface=st.sampled_from([pb.SURFACE_HOME, pb.SURFACE_NOW_PLAYING]))
        def fuzz(request: pb.RecordEventsRequest, surface: pb.Surface.ValueType) -> None:
            def record() -> None:
                reply = stub.RecordEvents(request, timeout=5)
                assert reply.accepted == len(request.events)

            check_answer("RecordEvents", codes, record)

            # then rank for the same (possibly odd) user: what was just written must not break reads
            def rank() -> None:
                stub.Rank(pb.RankRequest(user_id=request.user_id, surface=surface, seed_item_id="i00007"), timeout=5)

            check_answer("Rank", codes, rank)

        fuzz()
    reporter.add(fuzz_report("fuzzed RecordEvents+Rank (hypothesis)", codes, time.monotonic() - started))
    assert codes["RecordEvents OK"] > 0 and codes["RecordEvents INVALID_ARGUMENT"] > 0
    assert health(server) == 1
