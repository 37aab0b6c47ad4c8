"""One small typed interface per pipeline stage.

Components are stateless per request (resources are injected at construction) and never mutate
their inputs. Every stage has ``enabled(query)``: a component opts out for a query and the executor
skips it (what skipping means per stage is in ``ranking.pipeline``'s docstring). ``enabled`` is cheap
and must not fail.
"""

from __future__ import annotations

from typing import Protocol

from ranking.types import F32, Candidates, FilterResult, Query, RankResult, Selection, UserFeatures


class UserHydrator(Protocol):
    """Fetches query-time user features. May raise on dependency failure; the executor falls back."""

    name: str

    def enabled(self, query: Query) -> bool: ...

    async def hydrate(self, query: Query, timeout_s: float) -> UserFeatures: ...

    def fallback(self, query: Query) -> UserFeatures:
        """Cold-start features used when ``hydrate`` fails or times out. Must not fail."""
        ...


class CandidateSource(Protocol):
    """Returns candidates with retrieval scores, best first. May raise; the executor fails open.

    ``timed`` sources get the retrieval slice of the budget; an untimed source is in-process,
    cannot stall, and is the fallback that still runs when no time is left.
    """

    name: str
    timed: bool

    def enabled(self, query: Query) -> bool: ...

    async def fetch(self, query: Query, user: UserFeatures, source_id: int) -> Candidates: ...


class Filter(Protocol):
    """Splits candidates into kept and removed; ``kept`` preserves input order."""

    name: str

    def enabled(self, query: Query) -> bool: ...

    def apply(self, query: Query, user: UserFeatures, candidates: Candidates) -> FilterResult: ...


class CandidateHydrator(Protocol):
    """Returns the ranker input matrix, one row per candidate in input order."""

    name: str

    def enabled(self, query: Query) -> bool: ...

    def hydrate(self, query: Query, user: UserFeatures, candidates: Candidates) -> F32: ...


class Scorer(Protocol):
    """Returns one score per candidate row, in input order, and the model version used."""

    name: str

    def enabled(self, query: Query) -> bool: ...

    def model_version(self, query: Query) -> str: ...

    async def score(self, query: Query, features: F32) -> F32: ...


class Selector(Protocol):
    """Chooses up to ``query.limit`` rows, best first; every other row is held back."""

    name: str

    def enabled(self, query: Query) -> bool: ...

    def select(self, query: Query, candidates: Candidates, scores: F32) -> Selection: ...


class SideEffect(Protocol):
    """Runs after the response is sent. Must not raise into the request; failures are logged."""

    name: str

    def enabled(self, query: Query) -> bool: ...

    async def run(self, query: Query, result: RankResult) -> None: ...
