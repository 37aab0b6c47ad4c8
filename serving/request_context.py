"""The current request id, carried in ContextVars and stamped on every log record; the log format.

``serving.interceptors.RequestIdInterceptor`` binds it for every unary RPC before the handler runs
(``bind_request_id``); handlers read it with ``current_request_id``. Outside an RPC, and for an
RPC whose client sent an unacceptable id, log records show ``-``. The ranking service binds the
request's surface too (``bind_surface``); a record's stage is what the logging call passed
(``extra={"stage": ...}``), else the stage span current with tracing on.

``configure_logging`` writes ``text`` lines (``time LEVEL logger [request id] message``) or ``json``:
one object per line (python-json-logger), ``{"timestamp", "level", "logger", "message",
"request_id", "surface", "stage"}`` (null when unknown), plus ``trace_id``/``span_id`` (hex) while
an OpenTelemetry span is current (tracing on), and ``exc_info`` with the traceback when there is one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

try:  # tracing is optional: without the package, log records carry no trace ids
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover - the package is installed with the server's dependencies
    otel_trace = None  # type: ignore[assignment]

#: What log records show (``%(request_id)s``).
request_id_var: ContextVar[str] = ContextVar("encore_request_id", default="-")
#: The bound id, or why the client's id was refused; None outside ``bind_request_id``.
_bound: ContextVar[str | Exception | None] = ContextVar("encore_request_id_bound", default=None)
#: The surface of the current ranking call (``bind_surface``); None outside one.
surface_var: ContextVar[str | None] = ContextVar("encore_surface", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
#: The JSON keys every line has, in this order (null when unknown); trace ids follow when set.
JSON_KEYS = ("timestamp", "level", "logger", "message", "request_id", "surface", "stage")
#: Span attributes of the pipeline's spans (``ranking.tracing``) read when a record has no stage.
_SPAN_STAGE, _SPAN_SURFACE = "encore.stage", "encore.surface"


@contextmanager
def bind_request_id(bound: str | Exception) -> Iterator[None]:
    """Within the block the request id is ``bound``; an exception (the client's id was refused) is
    raised by ``current_request_id`` inside the handler, so the handler answers through its usual
    error path and metrics, and log records show ``-``."""
    log_token = request_id_var.set(bound if isinstance(bound, str) else "-")
    token = _bound.set(bound)
    try:
        yield
    finally:
        _bound.reset(token)
        request_id_var.reset(log_token)


def current_request_id() -> str:
    """The current RPC's request id. Raises why the client's id was refused (``InvalidRequest``), or
    ``RuntimeError`` when none is bound (the server was built without ``RequestIdInterceptor``)."""
    bound = _bound.get()
    if bound is None:
        raise RuntimeError("no request id bound: the server must install serving.interceptors.RequestIdInterceptor")
    if isinstance(bound, Exception):
        raise bound
    return bound


@contextmanager
def bind_surface(surface: str | None) -> Iterator[None]:
    """Within the block log records carry ``surface``."""
    token = surface_var.set(surface)
    try:
        yield
    finally:
        surface_var.reset(token)


class RequestIdLogFilter(logging.Filter):
    """Adds ``record.request_id`` from the ContextVar (use ``%(request_id)s`` in formats), and
    ``surface``, ``stage`` and, while an OpenTelemetry span is current, ``trace_id``/``span_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        surface = getattr(record, "surface", None) or surface_var.get()
        stage = getattr(record, "stage", None)
        if otel_trace is not None:
            span = otel_trace.get_current_span()
            context = span.get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
                record.span_id = format(context.span_id, "016x")
                attributes = getattr(span, "attributes", None) or {}
                stage = stage or attributes.get(_SPAN_STAGE)
                surface = surface or attributes.get(_SPAN_SURFACE)
        record.surface, record.stage = surface, stage
        return True


class EncoreJsonFormatter(JsonFormatter):
    """One JSON object per record: ``JSON_KEYS`` first (null when unknown), then any other fields."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}{request_id}{surface}{stage}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if log_data.get("request_id") == "-":
            log_data["request_id"] = None
        first = {key: log_data.pop(key, None) for key in JSON_KEYS}
        return {**first, **log_data}


def configure_logging(level: int = logging.INFO, log_format: str = "text") -> None:
    """Log to stderr at ``level`` as ``text`` or ``json`` lines; with json, Python warnings are log
    records too (so every line parses)."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(EncoreJsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(log_format == "json")
    logging.getLogger("faiss.loader").setLevel(max(level, logging.WARNING))
