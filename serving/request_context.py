"""The current request id, carried in ContextVars and stamped on every log record.

``serving.interceptors.RequestIdInterceptor`` binds it for every unary RPC before the handler runs
(``bind_request_id``); handlers read it with ``current_request_id``. Outside an RPC, and for an
RPC whose client sent an unacceptable id, log records show ``-``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: What log records show (``%(request_id)s``).
request_id_var: ContextVar[str] = ContextVar("encore_request_id", default="-")
#: The bound id, or why the client's id was refused; None outside ``bind_request_id``.
_bound: ContextVar[str | Exception | None] = ContextVar("encore_request_id_bound", default=None)


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


class RequestIdLogFilter(logging.Filter):
    """Adds ``record.request_id`` from the ContextVar (use ``%(request_id)s`` in formats)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("faiss.loader").setLevel(max(level, logging.WARNING))
