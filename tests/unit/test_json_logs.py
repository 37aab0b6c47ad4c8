"""``configure_logging(log_format="json")``: one JSON object per line with the request's context."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from serving.request_context import JSON_KEYS, bind_request_id, bind_surface, configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines()]


def test_every_line_is_a_json_object_with_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")
    log = logging.getLogger("encore.test")
    log.info("outside %s", "any request")
    with bind_request_id("req-1"), bind_surface("now_playing"):
        log.warning("retrieval degraded", extra={"stage": "retrieval"})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("failed")
    outside, inside, failed = lines(capsys.readouterr().err)
    assert list(outside)[: len(JSON_KEYS)] == list(JSON_KEYS)
    assert outside["message"] == "outside any request"
    assert (outside["level"], outside["logger"], outside["request_id"], outside["surface"]) == (
        "INFO",
        "encore.test",
        None,
        None,
    )
    assert outside["timestamp"].endswith("+00:00") and "trace_id" not in outside
    assert (inside["request_id"], inside["surface"], inside["stage"], inside["level"]) == (
        "req-1",
        "now_playing",
        "retrieval",
        "WARNING",
    )
    assert failed["message"] == "failed" and "ValueError: boom\nsecond line" in failed["exc_info"]


def test_trace_and_span_ids_while_a_span_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")
    context = SpanContext(trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7, is_remote=False)
    with trace.use_span(NonRecordingSpan(context)):
        logging.getLogger("encore.test").info("in a span")
    (line,) = lines(capsys.readouterr().err)
    assert (line["trace_id"], line["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


def test_warnings_become_json_lines_and_text_stays_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    (line,) = lines(capsys.readouterr().err)
    assert line["logger"] == "py.warnings" and "careful" in line["message"]
    configure_logging(logging.INFO, "text")
    with bind_request_id("req-2"):
        logging.getLogger("encore.test").info("plain")
    assert capsys.readouterr().err.rstrip().endswith("INFO encore.test [req-2] plain")
