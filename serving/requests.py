"""Validation of incoming protos into domain queries; every rejection names the field."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from encore.v1 import ranking_pb2 as pb
from models.id_index import IdIndex
from ranking.types import Query, RequestContext, Surface
from serving.config import Settings
from serving.errors import InvalidRequest

SURFACES: dict[int, Surface] = {pb.SURFACE_HOME: Surface.HOME, pb.SURFACE_NOW_PLAYING: Surface.NOW_PLAYING}
MAX_REQUEST_ID_LENGTH = 128
MAX_ITEM_ID_LENGTH = 256


def _check_user_id(user_id: str, settings: Settings) -> None:
    if not user_id.strip():
        raise InvalidRequest("user_id", "must not be empty")
    if len(user_id) > settings.max_user_id_length:
        raise InvalidRequest("user_id", f"is {len(user_id)} characters, the maximum is {settings.max_user_id_length}")


def request_id_of(raw: str) -> str:
    """The client's request id, or a fresh one when empty."""
    if len(raw) > MAX_REQUEST_ID_LENGTH:
        raise InvalidRequest("request_id", f"is {len(raw)} characters, the maximum is {MAX_REQUEST_ID_LENGTH}")
    return raw or uuid.uuid4().hex


def surface_of(value: int) -> Surface:
    try:
        return SURFACES[value]
    except KeyError:
        raise InvalidRequest("surface", f"must be SURFACE_HOME or SURFACE_NOW_PLAYING, got {value}") from None


def parse_rank_request(request: pb.RankRequest, settings: Settings, index_of: IdIndex, request_id: str) -> Query:
    """Validate ``request`` into a ``Query`` with the surface's default params."""
    _check_user_id(request.user_id, settings)
    surface = surface_of(request.surface)
    config = settings.surfaces[surface]
    if request.limit > config.max_limit:
        raise InvalidRequest("limit", f"is {request.limit}, the maximum on {surface.value} is {config.max_limit}")
    seed: int | None = None
    if surface is Surface.NOW_PLAYING:
        if not request.seed_item_id:
            raise InvalidRequest("seed_item_id", "is required on SURFACE_NOW_PLAYING")
        seed = index_of.lookup(request.seed_item_id)
        if seed is None:
            raise InvalidRequest("seed_item_id", f"unknown item {request.seed_item_id[:MAX_ITEM_ID_LENGTH]!r}")
    ctx = request.context
    return Query(
        request_id=request_id,
        user_id=request.user_id,
        surface=surface,
        limit=request.limit or config.default_limit,
        params=config.params,
        seed_item=seed,
        context=RequestContext(ctx.device, ctx.locale, ctx.client_timestamp_ms),
    )


@dataclass(frozen=True)
class ParsedEvents:
    plays: list[str]  # oldest first
    skips: list[str]
    likes: list[str]


def parse_events(request: pb.RecordEventsRequest, settings: Settings, index_of: IdIndex) -> ParsedEvents:
    """Validate events; plays and likes both count as listening (recent plays), in time order."""
    _check_user_id(request.user_id, settings)
    if not request.events:
        raise InvalidRequest("events", "must contain at least one event")
    if len(request.events) > settings.max_events:
        raise InvalidRequest("events", f"has {len(request.events)} events, the maximum is {settings.max_events}")
    parsed = ParsedEvents([], [], [])
    ordered = sorted(enumerate(request.events), key=lambda pair: (pair[1].timestamp_ms, pair[0]))
    for i, event in ordered:
        if index_of.lookup(event.item_id) is None:
            raise InvalidRequest(f"events[{i}].item_id", f"unknown item {event.item_id[:MAX_ITEM_ID_LENGTH]!r}")
        if event.type == pb.EVENT_TYPE_PLAY:
            parsed.plays.append(event.item_id)
        elif event.type == pb.EVENT_TYPE_LIKE:
            parsed.likes.append(event.item_id)
            parsed.plays.append(event.item_id)
        elif event.type == pb.EVENT_TYPE_SKIP:
            parsed.skips.append(event.item_id)
        else:
            raise InvalidRequest(f"events[{i}].type", f"must be PLAY, SKIP or LIKE, got {event.type}")
    return parsed
