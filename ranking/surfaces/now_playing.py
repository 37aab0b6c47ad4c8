"""Now Playing: what to play next after the seed item, led by the seed's co-listened neighbours;
never the seed or anything just played (known items only under ``known_items: keep``)."""

from __future__ import annotations

from ranking.components import Components
from ranking.pipeline import PipelineDeclaration
from ranking.types import Surface


def declare(c: Components) -> PipelineDeclaration:
    return PipelineDeclaration(
        surface=Surface.NOW_PLAYING,
        user_hydrator=c.user_hydrator,
        sources=(c.seed_neighbors, c.ann, c.co_listen, c.popularity),
        filters=(c.duplicates, c.seed_item, c.known_items, c.recently_played, c.skipped),
        candidate_hydrator=c.candidate_hydrator,
        scorer=c.scorer,
        selector=c.selector,
        side_effects=c.side_effects,
    )
