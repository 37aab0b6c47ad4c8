"""Which metrics decide an experiment: success metrics, guardrails with margins, and secondary ones.

A metric is built from outcome metrics (the ``metric`` field of outcome lines): a **mean** metric
is the per-unit sum of ``numerator`` (streams per user); a **ratio** metric is
``sum(numerator) / sum(denominator)`` over units (skip rate = skips / (streams + skips)), analysed
with the delta method. ``direction`` says which way is good. Roles (Spotify's decision rule,
Schultzberg et al. 2024):

- ``success``: the experiment ships only if at least one improved significantly (superiority;
  alpha is Bonferroni-corrected over the success metrics);
- ``guardrail``: must be shown non-inferior: the one-sided bound of its relative lift must not be
  worse than ``margin`` (e.g. 0.05: skip rate must not rise by more than 5 % of control's);
  alpha is not corrected for guardrails;
- ``secondary``: reported, never decides.

Any success or guardrail metric that moved significantly the wrong way (deterioration) blocks a
ship. File format (``--metrics FILE``)::

    metrics:
      - {name: streams, role: success, numerator: stream, direction: increase}
      - {name: skip_rate, role: guardrail, numerator: skip, denominator: [stream, skip],
         direction: decrease, margin: 0.05}

``DEFAULT_METRICS`` is this pair plus ``likes`` per user (secondary): what the server's outcome
log records from ``RecordEvents``. Errors raise ``AnalysisInputError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import yaml

from offline.experiments.outcome_logs import AnalysisInputError

__all__ = ["DEFAULT_METRICS", "Direction", "MetricSpec", "Role", "load_metric_specs", "parse_metric_specs"]

Role = Literal["success", "guardrail", "secondary"]
Direction = Literal["increase", "decrease"]
_KEYS: Final[frozenset[str]] = frozenset({"name", "role", "numerator", "denominator", "direction", "margin"})


@dataclass(frozen=True)
class MetricSpec:
    """One decision metric (see the module docstring)."""

    name: str
    role: Role
    numerator: str
    denominator: tuple[str, ...] | None = None
    direction: Direction = "increase"
    margin: float | None = None
    """Guardrails only: the non-inferiority margin, relative to control (0.05 = 5 %)."""

    @property
    def is_ratio(self) -> bool:
        return self.denominator is not None

    @property
    def outcome_metrics(self) -> tuple[str, ...]:
        """The outcome metrics this metric reads."""
        return (self.numerator, *(self.denominator or ()))

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is better."""
        return 1.0 if self.direction == "increase" else -1.0


DEFAULT_METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec("streams", "success", "stream"),
    MetricSpec("skip_rate", "guardrail", "skip", ("stream", "skip"), "decrease", 0.05),
    MetricSpec("likes", "secondary", "like"),
)


def parse_metric_specs(data: object, source: str = "<metrics>") -> tuple[MetricSpec, ...]:
    """Validate a ``{"metrics": [...]}`` document; every error names ``source`` and the field."""

    def fail(where: str, problem: str) -> AnalysisInputError:
        return AnalysisInputError(f"{where}: {problem}", path=source)

    if not isinstance(data, Mapping) or set(data) != {"metrics"}:
        raise fail("top level", "expected a mapping with exactly the key 'metrics'")
    items = data["metrics"]
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise fail("metrics", "expected a non-empty list")
    specs: list[MetricSpec] = []
    for i, raw in enumerate(items):
        where = f"metrics[{i}]"
        if not isinstance(raw, Mapping):
            raise fail(where, "expected a mapping")
        unknown = set(raw) - _KEYS
        if unknown:
            raise fail(where, f"unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
        for key in ("name", "role", "numerator"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise fail(f"{where}.{key}", "required, a non-empty string")
        role, direction = raw["role"], raw.get("direction", "increase")
        if role not in get_args(Role):
            raise fail(f"{where}.role", f"must be one of {list(get_args(Role))}, got {role!r}")
        if direction not in get_args(Direction):
            raise fail(f"{where}.direction", f"must be one of {list(get_args(Direction))}, got {direction!r}")
        denominator = raw.get("denominator")
        if denominator is not None:
            if isinstance(denominator, str):
                denominator = [denominator]
            if (
                not isinstance(denominator, Sequence)
                or not denominator
                or not all(isinstance(m, str) and m for m in denominator)
            ):
                raise fail(f"{where}.denominator", "a metric name or a non-empty list of metric names")
            denominator = tuple(denominator)
        margin = raw.get("margin")
        if role == "guardrail":
            if isinstance(margin, bool) or not isinstance(margin, int | float) or not (0.0 <= margin < 1.0):
                raise fail(f"{where}.margin", f"a guardrail needs a margin in [0, 1) (0.05 = 5 %), got {margin!r}")
            margin = float(margin)
        elif margin is not None:
            raise fail(f"{where}.margin", f"only guardrails have a margin (role is {role!r})")
        specs.append(MetricSpec(raw["name"], role, raw["numerator"], denominator, direction, margin))
    names = [s.name for s in specs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise fail("metrics", f"name {duplicate!r} appears twice")
    if not any(s.role == "success" for s in specs):
        raise fail("metrics", "needs at least one success metric (nothing could justify shipping)")
    return tuple(specs)


def load_metric_specs(path: Path) -> tuple[MetricSpec, ...]:
    """Read and validate a metrics YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AnalysisInputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AnalysisInputError(f"not valid YAML: {exc}", path=str(path)) from exc
    return parse_metric_specs(data, str(path))
