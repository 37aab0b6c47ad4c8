from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Surface(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SURFACE_UNSPECIFIED: _ClassVar[Surface]
    SURFACE_HOME: _ClassVar[Surface]
    SURFACE_NOW_PLAYING: _ClassVar[Surface]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_PLAY: _ClassVar[EventType]
    EVENT_TYPE_SKIP: _ClassVar[EventType]
    EVENT_TYPE_LIKE: _ClassVar[EventType]
SURFACE_UNSPECIFIED: Surface
SURFACE_HOME: Surface
SURFACE_NOW_PLAYING: Surface
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_PLAY: EventType
EVENT_TYPE_SKIP: EventType
EVENT_TYPE_LIKE: EventType

class RequestContext(_message.Message):
    __slots__ = ("device", "locale", "client_timestamp_ms")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    device: str
    locale: str
    client_timestamp_ms: int
    def __init__(self, device: _Optional[str] = ..., locale: _Optional[str] = ..., client_timestamp_ms: _Optional[int] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("user_id", "surface", "seed_item_id", "limit", "context", "request_id", "debug")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    SEED_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEBUG_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    surface: Surface
    seed_item_id: str
    limit: int
    context: RequestContext
    request_id: str
    debug: bool
    def __init__(self, user_id: _Optional[str] = ..., surface: _Optional[_Union[Surface, str]] = ..., seed_item_id: _Optional[str] = ..., limit: _Optional[int] = ..., context: _Optional[_Union[RequestContext, _Mapping]] = ..., request_id: _Optional[str] = ..., debug: _Optional[bool] = ...) -> None: ...

class RankedItem(_message.Message):
    __slots__ = ("item_id", "score", "position", "source")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    position: int
    source: str
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., position: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("experiment", "variant")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    variant: str
    def __init__(self, experiment: _Optional[str] = ..., variant: _Optional[str] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "milliseconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MILLISECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    milliseconds: float
    def __init__(self, stage: _Optional[str] = ..., milliseconds: _Optional[float] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("request_id", "items", "assignments", "model_version", "degraded", "timings", "bundle_version")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[RankedItem]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    model_version: str
    degraded: _containers.RepeatedScalarFieldContainer[str]
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    bundle_version: str
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[RankedItem, _Mapping]]] = ..., assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., model_version: _Optional[str] = ..., degraded: _Optional[_Iterable[str]] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., bundle_version: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "item_id", "timestamp_ms")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    item_id: str
    timestamp_ms: int
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., item_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class RecordEventsRequest(_message.Message):
    __slots__ = ("user_id", "events", "request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    events: _containers.RepeatedCompositeFieldContainer[Event]
    request_id: str
    def __init__(self, user_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RecordEventsResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...
