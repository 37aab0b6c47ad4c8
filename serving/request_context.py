"""The current request id, carried in a ContextVar and stamped on every log record."""

from __future__ import annotations

import logging
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("encore_request_id", default="-")


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
