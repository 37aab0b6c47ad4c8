"""Span names and attribute keys of the pipeline's OpenTelemetry spans (the API only, no SDK).

``PipelineExecutor`` takes an ``opentelemetry.trace.Tracer``; the default, ``NO_TRACER``, records
nothing (the offline evaluation, tests, a server with ``tracing: false``). The server's composition
root (``serving.tracing``) builds the SDK provider and passes its tracer in.

With a recording tracer, one ``execute`` makes one span per stage, in order, each current while its
stage runs (so log records and any span a component starts belong to it), as children of the span
current when ``execute`` was called — in the server, the gRPC server span of the ``Rank`` call,
which also gets the request-level attributes (surface, request id, degraded stages, model version,
items, experiment variants). Attributes (``encore.*``):

=========================  ===============================================================
``encore.surface``         every span
``encore.stage``           stage spans: the stage's name (also the span's name)
``encore.request_id``      every span
``encore.degraded``        stage spans: bool, this stage fell back; the request span: the
                           degraded stages (string array, empty when none)
``encore.candidates.in``   filters, candidate_features, scoring, selection
``encore.candidates.out``  retrieval, filters, candidate_features, scoring, selection
``encore.removed.<name>``  filters: candidates the filter removed
``encore.model_version``   scoring and the request span ("" when nothing scored)
``encore.items``           the request span: items returned
``encore.experiments``     the request span: ``experiment:variant`` per assignment
=========================  ===============================================================
"""

from __future__ import annotations

from typing import Final

from opentelemetry import trace

#: The tracer that records nothing (tracing off): the executor then opens no span at all.
NO_TRACER: Final[trace.Tracer] = trace.NoOpTracer()

#: The pipeline's stages, in the order ``PipelineExecutor.execute`` runs them (one span each).
STAGES: Final[tuple[str, ...]] = (
    "user_features",
    "retrieval",
    "filters",
    "candidate_features",
    "scoring",
    "selection",
)

SURFACE: Final = "encore.surface"
STAGE: Final = "encore.stage"
REQUEST_ID: Final = "encore.request_id"
DEGRADED: Final = "encore.degraded"
CANDIDATES_IN: Final = "encore.candidates.in"
CANDIDATES_OUT: Final = "encore.candidates.out"
REMOVED_PREFIX: Final = "encore.removed."
MODEL_VERSION: Final = "encore.model_version"
ITEMS: Final = "encore.items"
EXPERIMENTS: Final = "encore.experiments"


def is_recording(tracer: trace.Tracer) -> bool:
    """False for the tracer that never records (then the executor skips the request-level attributes)."""
    return not isinstance(tracer, trace.NoOpTracer)
