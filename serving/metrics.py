"""Every Encore metric, defined once (prefix ``encore_``, base units, low-cardinality labels).

With several worker processes (``encore serve --workers N``) ``PROMETHEUS_MULTIPROC_DIR`` is set
before this module is imported; values then live in per-process files that the parent aggregates
on one endpoint (gauges use the multiprocess mode given here).

Labels are drawn from: surface, stage, filter, method, outcome, model_version, bundle_version —
never user or item ids.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Prometheus metrics in their own registry; implements ``ranking.observer.PipelineObserver``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[object, ...], Any] = {}
        r = self.registry
        self.requests = Counter(
            "encore_requests",
            "RPCs handled, by method, surface and outcome (a gRPC status name)",
            ["method", "surface", "outcome"],
            registry=r,
        )
        self.request_latency = Histogram(
            "encore_request_duration_seconds",
            "Server-side RPC latency",
            ["method", "surface", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency_seconds = Histogram(
            "encore_stage_duration_seconds",
            "Pipeline stage latency",
            ["surface", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.degradations = Counter(
            "encore_degraded", "Requests answered with a stage's fallback", ["surface", "stage"], registry=r
        )
        self.filtered_candidates = Counter(
            "encore_filtered_candidates", "Candidates removed, by filter", ["surface", "filter"], registry=r
        )
        self.events = Counter("encore_events", "Events recorded by RecordEvents, by type", ["type"], registry=r)
        self.bundle_info = Gauge(
            "encore_bundle_info",
            "The serving bundle and its default model (value 1)",
            ["bundle_version", "model_version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.exposures = Counter(
            "encore_exposures",
            "Exposure lines written to the log, by experiment and variant",
            ["experiment", "variant"],
            registry=r,
        )
        self.exposures_dropped = Counter(
            "encore_exposures_dropped", "Exposures not logged: queue_full or write_error", ["reason"], registry=r
        )
        self.outcomes = Counter(
            "encore_outcomes",
            "Outcome lines (accepted RecordEvents events) written to the log, by metric (stream, skip, like)",
            ["metric"],
            registry=r,
        )
        self.outcomes_dropped = Counter(
            "encore_outcomes_dropped", "Outcomes not logged: queue_full or write_error", ["reason"], registry=r
        )
        self.experiment_reloads = Counter(
            "encore_experiments_reloads",
            "Experiments file or store revision reloads, by outcome (applied, rejected)",
            ["outcome"],
            registry=r,
        )
        self.bundle_reloads = Counter(
            "encore_bundle_reloads", "Bundle reloads, by outcome (applied, rejected)", ["outcome"], registry=r
        )
        self.experiments_revision = Gauge(
            "encore_experiments_revision",
            "The experiments store revision this process serves (0: none); across workers the oldest",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.experiments_propagation = Histogram(
            "encore_experiments_propagation_seconds",
            "Commit of an experiments store revision to this process serving it (the propagation SLI)",
            buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.experiments_store_up = Gauge(
            "encore_experiments_store_up",
            "1 when the experiments store answered the last poll, 0 while serving the last good revision",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.experiments_active = Gauge(
            "encore_experiments_active",
            "Experiments in the serving configuration",
            registry=r,
            multiprocess_mode="max",
        )
        self.shadow_rbo = Histogram(
            "encore_shadow_rbo",
            "Rank-biased overlap (p=0.9) of the shadow model's list with the served one",
            ["surface", "model"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
            registry=r,
        )
        self.shadow_overlap = Histogram(
            "encore_shadow_overlap_at_10",
            "Share of the served top 10 that the shadow model also puts in its top 10",
            ["surface", "model"],
            buckets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            registry=r,
        )
        self.shadow_failures = Counter(
            "encore_shadow_failures", "Shadow scorings that failed", ["surface", "model"], registry=r
        )
        self.captures = Counter("encore_captures", "Captured Rank exchanges written to the capture log", registry=r)
        self.captures_dropped = Counter(
            "encore_captures_dropped",
            "Captured exchanges not written: queue_full or write_error",
            ["reason"],
            registry=r,
        )
        self.shed = Counter(
            "encore_shed_requests",
            "RPCs refused with RESOURCE_EXHAUSTED by admission: in_flight (max_in_flight) or queue_delay (CoDel)",
            ["method", "reason"],
            registry=r,
        )
        self.expired = Counter(
            "encore_expired_requests",
            "RPCs dropped without an answer: the client's deadline had passed (or it cancelled)",
            ["method"],
            registry=r,
        )

    def stage_latency(self, surface: str, stage: str, seconds: float) -> None:
        self._child(self.stage_latency_seconds, surface, stage).observe(seconds)

    def degraded(self, surface: str, stage: str) -> None:
        self._child(self.degradations, surface, stage).inc()

    def filtered(self, surface: str, filter_name: str, count: int) -> None:
        self._child(self.filtered_candidates, surface, filter_name).inc(count)

    def shadow_agreement(self, surface: str, model: str, rbo: float, overlap_at_10: float) -> None:
        self._child(self.shadow_rbo, surface, model).observe(rbo)
        self._child(self.shadow_overlap, surface, model).observe(overlap_at_10)

    def shadow_failed(self, surface: str, model: str) -> None:
        self._child(self.shadow_failures, surface, model).inc()

    def request(self, method: str, surface: str, outcome: str, seconds: float) -> None:
        self._child(self.requests, method, surface, outcome).inc()
        self._child(self.request_latency, method, surface, outcome).observe(seconds)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, resolved once per label set (``labels()`` is costly per call)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child
