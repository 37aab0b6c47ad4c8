"""Fault-injection reports: what a stream of requests saw while a dependency was broken.

A load generator records one ``Sample`` per request (method, send and completion times, status
code, degraded stages). ``summarise`` turns a scenario's samples into a ``FaultReport`` row:
requests sent, OK answers, errors by method and code, degraded answers, latency percentiles and
the recovery time — from the end of the fault to the first fully healthy answer (OK and not
degraded) after which every answer stayed healthy. ``format_table`` prints rows as a table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from loadtests.stats import percentile


@dataclass(frozen=True)
class Sample:
    """One request: ``method`` is e.g. ``Rank/home`` or ``RecordEvents``; times are ``time.monotonic``."""

    method: str
    sent: float
    done: float
    code: str  # "OK" or a grpc.StatusCode name
    degraded: tuple[str, ...] = ()
    user_id: str = ""
    item_id: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def healthy(self) -> bool:
        return self.ok and not self.degraded

    @property
    def latency_ms(self) -> float:
        return (self.done - self.sent) * 1000.0


@dataclass(frozen=True)
class FaultReport:
    scenario: str
    sent: int
    ok: int
    errors: dict[str, int] = field(default_factory=dict)  # "method CODE" -> count
    degraded: int = 0
    p50_ms: float | None = None  # None: not measured
    p99_ms: float | None = None
    max_ms: float | None = None
    recovery_s: float | None = None
    note: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def recovery_time(samples: Iterable[Sample], fault_end: float) -> float | None:
    """Seconds from ``fault_end`` to the first healthy answer after which all answers were healthy.

    Only answers completed at or after ``fault_end`` count; ``None`` when the last one is unhealthy
    (or there is none): not recovered (yet).
    """
    after = sorted((s for s in samples if s.done >= fault_end), key=lambda s: s.done)
    last_bad = max((i for i, s in enumerate(after) if not s.healthy), default=-1)
    if last_bad + 1 >= len(after):
        return None
    return after[last_bad + 1].done - fault_end


def summarise(scenario: str, samples: Sequence[Sample], fault_end: float | None = None, note: str = "") -> FaultReport:
    errors = Counter(f"{s.method.split('/')[0]} {s.code}" for s in samples if not s.ok)
    latencies = [s.latency_ms for s in samples]
    return FaultReport(
        scenario=scenario,
        sent=len(samples),
        ok=sum(s.ok for s in samples),
        errors=dict(sorted(errors.items())),
        degraded=sum(bool(s.degraded) for s in samples if s.ok),
        p50_ms=percentile(latencies, 50) if latencies else None,
        p99_ms=percentile(latencies, 99) if latencies else None,
        max_ms=max(latencies, default=None),
        recovery_s=None if fault_end is None else recovery_time(samples, fault_end),
        note=note,
    )


COLUMNS = ("scenario", "sent", "ok", "errors", "degraded", "p50 ms", "p99 ms", "max ms", "recovery s", "note")


def _cells(report: FaultReport) -> tuple[str, ...]:
    errors = ", ".join(f"{key}×{n}" for key, n in report.errors.items()) or "0"
    recovery = "-" if report.recovery_s is None else f"{report.recovery_s:.2f}"
    return (
        report.scenario,
        str(report.sent),
        str(report.ok),
        errors,
        str(report.degraded),
        *("-" if ms is None else f"{ms:.1f}" for ms in (report.p50_ms, report.p99_ms, report.max_ms)),
        recovery,
        report.note,
    )


def format_table(reports: Sequence[FaultReport]) -> str:
    """A plain-text table, one row per report ("-" recovery: no fault end, or not recovered)."""
    rows = [COLUMNS, *(_cells(r) for r in reports)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    numeric = {1, 2, 4, 5, 6, 7, 8}

    def line(row: tuple[str, ...]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = (cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in pairs)
        return " | ".join(cells).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])
