"""Home: personalised picks from the user's taste (recent plays may come back; known items only
under ``known_items: keep``)."""

from __future__ import annotations

from ranking.components import Components
from ranking.pipeline import PipelineDeclaration
from ranking.types import Surface


def declare(c: Components) -> PipelineDeclaration:
    return PipelineDeclaration(
        surface=Surface.HOME,
        user_hydrator=c.user_hydrator,
        sources=(c.ann, c.co_listen, c.popularity),
        filters=(c.duplicates, c.known_items, c.skipped),
        candidate_hydrator=c.candidate_hydrator,
        scorer=c.scorer,
        selector=c.selector,
        side_effects=c.side_effects,
    )
