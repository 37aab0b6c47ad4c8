"""Request validation: every rejection names the field; events are put in time order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encore.v1 import ranking_pb2 as pb
from models.id_index import IdIndex
from ranking.types import Surface
from serving.config import load_settings
from serving.errors import InvalidRequest
from serving.requests import parse_events, parse_rank_request, request_id_of

SETTINGS = load_settings(Path("b"))
INDEX_OF = IdIndex(np.asarray(["a", "b", "c"]))


def test_a_valid_now_playing_request_becomes_a_query_with_the_seed_index() -> None:
    request = pb.RankRequest(user_id="u", surface=pb.SURFACE_NOW_PLAYING, seed_item_id="c", limit=7)
    request.context.device = "ios"
    query = parse_rank_request(request, SETTINGS, INDEX_OF, "rid")
    assert (query.surface, query.seed_item, query.limit, query.context.device) == (Surface.NOW_PLAYING, 2, 7, "ios")
    assert query.params == SETTINGS.surfaces[Surface.NOW_PLAYING].params


def test_limit_at_the_maximum_is_accepted_and_one_over_is_not() -> None:
    top = SETTINGS.surfaces[Surface.HOME].max_limit
    assert parse_rank_request(pb.RankRequest(user_id="u", surface=1, limit=top), SETTINGS, INDEX_OF, "r").limit == top
    with pytest.raises(InvalidRequest) as caught:
        parse_rank_request(pb.RankRequest(user_id="u", surface=1, limit=top + 1), SETTINGS, INDEX_OF, "r")
    assert caught.value.field == "limit"


def test_whitespace_user_id_is_empty() -> None:
    with pytest.raises(InvalidRequest, match=r"^user_id: must not be empty"):
        parse_rank_request(pb.RankRequest(user_id="  ", surface=1), SETTINGS, INDEX_OF, "r")


def test_request_id_is_generated_when_missing_and_bounded_when_given() -> None:
    assert len(request_id_of("")) == 32
    assert request_id_of("abc") == "abc"
    with pytest.raises(InvalidRequest, match=r"^request_id:"):
        request_id_of("x" * 129)


def test_events_are_ordered_by_timestamp_and_likes_count_as_plays() -> None:
    request = pb.RecordEventsRequest(
        user_id="u",
        events=[
            pb.Event(type=pb.EVENT_TYPE_PLAY, item_id="b", timestamp_ms=30),
            pb.Event(type=pb.EVENT_TYPE_LIKE, item_id="a", timestamp_ms=10),
            pb.Event(type=pb.EVENT_TYPE_SKIP, item_id="c", timestamp_ms=20),
        ],
    )
    events = parse_events(request, SETTINGS, INDEX_OF)
    assert events.plays == ["a", "b"]
    assert events.skips == ["c"]
    assert events.likes == ["a"]


def test_an_unknown_item_in_the_third_event_is_named_by_its_index() -> None:
    request = pb.RecordEventsRequest(
        user_id="u",
        events=[pb.Event(type=1, item_id="a"), pb.Event(type=1, item_id="b"), pb.Event(type=1, item_id="z")],
    )
    with pytest.raises(InvalidRequest, match=r"^events\[2\]\.item_id: unknown item 'z'"):
        parse_events(request, SETTINGS, INDEX_OF)
