"""What the pipeline executor reports; serving implements it with Prometheus metrics."""

from __future__ import annotations

from typing import Protocol


class PipelineObserver(Protocol):
    def stage_latency(self, surface: str, stage: str, seconds: float) -> None: ...

    def degraded(self, surface: str, stage: str) -> None: ...

    def filtered(self, surface: str, filter_name: str, count: int) -> None: ...


class ShadowObserver(Protocol):
    def shadow_agreement(self, surface: str, model: str, rbo: float, overlap_at_10: float) -> None: ...

    def shadow_failed(self, surface: str, model: str) -> None: ...


class NullObserver:
    """Observer that records nothing (unit tests, offline tools)."""

    def stage_latency(self, surface: str, stage: str, seconds: float) -> None:
        return None

    def degraded(self, surface: str, stage: str) -> None:
        return None

    def filtered(self, surface: str, filter_name: str, count: int) -> None:
        return None
