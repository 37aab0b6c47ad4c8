"""Domain types of the ranking pipeline. Immutable; arrays are never mutated in place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class Surface(StrEnum):
    """Where a ranked list is shown."""

    HOME = "home"
    NOW_PLAYING = "now_playing"


#: What a surface does with the items a user already knows (``UserFeatures.known_items``).
KnownItemsPolicy = Literal["exclude", "keep"]
KNOWN_ITEMS_POLICIES: tuple[KnownItemsPolicy, ...] = ("exclude", "keep")


@dataclass(frozen=True, slots=True)
class Tunable:
    """Marks a ``RankingParams`` field an experiment variant may override, and the values it may take:
    ``kind="model"`` a model version (non-empty; checked against the bundle's models when known),
    ``"int"`` an int in ``lo..hi``, ``"fraction"`` a number in 0..1."""

    kind: Literal["model", "int", "fraction"]
    lo: int = 0
    hi: int = 1


MODEL_VERSION: Final[Tunable] = Tunable("model")
FRACTION: Final[Tunable] = Tunable("fraction")
_TUNABLE: Final[str] = "tunable"
#: ``RankingParams.open_slots`` at or above every list limit: score order only.
OPEN_SLOTS_OFF: Final[int] = 1000


def _tunable(spec: Tunable) -> Mapping[str, Tunable]:
    """Field metadata that makes a ``RankingParams`` field settable by experiment variants."""
    return {_TUNABLE: spec}


@dataclass(frozen=True)
class RankingParams:
    """Knobs of one ranking: surface defaults (settings file), overridden per experiment variant.

    The fields marked ``_tunable(...)`` are the params a variant may set (``TUNABLE_PARAMS``); the
    experiments config validates and names them from here, so a new knob is declared once.

    ``known_items``: ``"exclude"`` removes the user's known items (``KnownItemsFilter``),
    ``"keep"`` lets them be recommended. ``seed_neighbors_size`` / ``co_listen_size``: candidates
    from the seed's neighbour row (Now Playing) and from the history co-listen source; 0 disables.
    ``open_slots`` (Now Playing only): the first ``open_slots`` positions go by score alone, the
    following ones to the seed's nearest neighbours first (``ranking.selectors.seed_slots``); 0 puts
    the neighbours from the top, ``OPEN_SLOTS_OFF`` (the default, longer than any list) turns it off.
    ``cascade_size``: with a bundle that declares a light model, that model scores every candidate
    and the request's model only its best ``cascade_size`` (``ranking.scorers.onnx_ranker``); 0
    scores every candidate with the request's model.
    """

    model_version: str | None = field(default=None, metadata=_tunable(MODEL_VERSION))  # None: the bundle's default
    retrieval_size: int = field(default=300, metadata=_tunable(Tunable("int", 10, 5000)))  # candidates retrieved
    popularity_size: int = 100
    seed_neighbors_size: int = field(default=100, metadata=_tunable(Tunable("int", 0, 1000)))
    co_listen_size: int = field(default=150, metadata=_tunable(Tunable("int", 0, 1000)))
    known_items: KnownItemsPolicy = "exclude"
    seed_weight: float = field(default=0.7, metadata=_tunable(FRACTION))  # Now Playing: seed item vs user signal
    recent_weight: float = field(default=0.3, metadata=_tunable(FRACTION))  # blend weight of the recent plays
    diversity_cap: int = field(default=2, metadata=_tunable(Tunable("int", 1, 100)))  # max items per artist
    #: Now Playing: after this many positions, the seed's nearest neighbours come first (``SeedSlots``).
    open_slots: int = field(default=OPEN_SLOTS_OFF, metadata=_tunable(Tunable("int", 0, OPEN_SLOTS_OFF)))
    #: Cascade: rows the full model scores after the light model scored them all; 0 = no cascade.
    cascade_size: int = field(default=0, metadata=_tunable(Tunable("int", 0, 5000)))
    shadow_model: str | None = field(default=None, metadata=_tunable(MODEL_VERSION))
    """Scored after the response on the same candidates, never served (``ranking.side_effects.shadow_scoring``)."""

    def with_overrides(self, overrides: Mapping[str, Any]) -> RankingParams:
        """Return a copy with ``overrides`` applied (names are validated by the experiments config)."""
        return replace(self, **overrides) if overrides else self


TUNABLE_PARAMS: Final[Mapping[str, Tunable]] = MappingProxyType(
    {f.name: f.metadata[_TUNABLE] for f in fields(RankingParams) if _TUNABLE in f.metadata}
)
"""The ``RankingParams`` an experiment variant may set, in declaration order, with their valid values."""


@dataclass(frozen=True)
class RequestContext:
    device: str = ""
    locale: str = ""
    client_timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class Assignment:
    """The user sees ``variant`` of ``experiment``; ``exposed`` when bucketed by hashing (log it),
    False when forced by an allowlist override (not logged as an exposure)."""

    experiment: str
    variant: str
    exposed: bool = True


@dataclass(frozen=True)
class Query:
    """A validated ranking request. ``seed_item`` is an item index (Now Playing only)."""

    request_id: str
    user_id: str
    surface: Surface
    limit: int
    params: RankingParams
    seed_item: int | None = None
    context: RequestContext = field(default_factory=RequestContext)
    assignments: tuple[Assignment, ...] = ()


@dataclass(frozen=True)
class UserFeatures:
    """Query-time user features for one request. A cold-start user has a zero ``vector`` and default
    ``stats``; ``query_vector`` may still be non-zero (recent plays, or the seed on Now Playing)."""

    vector: F32
    stats: F32
    recent_items: I64  # item indices, most recent first
    recent_vector: F32  # mean vector of recent items; zeros when none
    query_vector: F32  # the request's retrieval query (``ranking.query.retrieval_query``), computed once
    skipped_items: I64 = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    cold_start: bool = False
    known_items: I64 = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # ascending; empty when cold

    @property
    def history_items(self) -> I64:
        """Known items and recent plays (may repeat): the history the co-listen signals use."""
        if not len(self.recent_items):
            return self.known_items
        return np.concatenate([self.known_items, self.recent_items])


@dataclass(frozen=True)
class Candidates:
    """Columnar candidate set: row i is one candidate item."""

    items: I64
    retrieval_scores: F32
    source_ids: npt.NDArray[np.int8]  # index into the pipeline's source names

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def take(self, rows: npt.NDArray[np.bool_] | I64) -> Candidates:
        """Rows selected by a boolean mask or an index array, in that order."""
        return Candidates(self.items[rows], self.retrieval_scores[rows], self.source_ids[rows])

    @staticmethod
    def empty() -> Candidates:
        return Candidates(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int8))

    @staticmethod
    def concat(parts: list[Candidates]) -> Candidates:
        if not parts:
            return Candidates.empty()
        return Candidates(
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.retrieval_scores for p in parts]),
            np.concatenate([p.source_ids for p in parts]),
        )


@dataclass(frozen=True)
class FilterResult:
    """What a filter kept and what it removed; together exactly its input."""

    kept: Candidates
    removed: Candidates

    @staticmethod
    def from_mask(candidates: Candidates, keep: npt.NDArray[np.bool_]) -> FilterResult:
        """Split ``candidates`` by a boolean keep-mask, preserving order on both sides."""
        return FilterResult(kept=candidates.take(keep), removed=candidates.take(~keep))


@dataclass(frozen=True)
class Selection:
    """Rows (into the scored candidates) chosen for the response, best first, and rows held back."""

    selected: I64
    held_back: I64


@dataclass(frozen=True)
class ScoredItem:
    item: int
    score: float
    source: str


@dataclass(frozen=True)
class ScoringInputs:
    """What the scorer saw, kept for side effects that re-score it (shadow models)."""

    candidates: Candidates
    features: F32


@dataclass(frozen=True)
class RankResult:
    """The pipeline's answer for one query. ``scoring_inputs`` is set only when a side effect
    needs it (``params.shadow_model``) and scoring did not fall back."""

    items: tuple[ScoredItem, ...]
    model_version: str
    degraded: tuple[str, ...]
    timings_ms: dict[str, float]
    removed_by_filter: dict[str, int]
    scoring_inputs: ScoringInputs | None = None
