"""Shadow scoring: a second model ranks the same candidates after the response, off the hot path.

When ``params.shadow_model`` names a model (from the surface settings or an experiment variant),
this side effect scores the request's exact candidates and features with it, applies the same
selection, and reports how far the shadow ranking agrees with what was served — RBO and
overlap@10 — so a team sees a new model's behaviour on real traffic before it serves any.
"""

from __future__ import annotations

from ranking.agreement import overlap_at_k, rank_biased_overlap
from ranking.observer import ShadowObserver
from ranking.scorers.onnx_ranker import OnnxRankerScorer
from ranking.stages import Selector
from ranking.types import Query, RankResult


class ShadowScoringSideEffect:
    """Scores with ``params.shadow_model`` when it differs from the model that served."""

    name = "shadow_scoring"

    def __init__(self, scorer: OnnxRankerScorer, selector: Selector, observer: ShadowObserver) -> None:
        self._scorer = scorer
        self._selector = selector
        self._observer = observer

    def enabled(self, query: Query) -> bool:
        shadow = query.params.shadow_model
        return shadow is not None and shadow != self._scorer.model_version(query)

    async def run(self, query: Query, result: RankResult) -> None:
        inputs, shadow = result.scoring_inputs, query.params.shadow_model
        if inputs is None or shadow is None:  # scoring fell back: nothing comparable was served
            return
        try:
            scores = await self._scorer.score_with(shadow, inputs.features)
        except Exception:
            self._observer.shadow_failed(query.surface.value, shadow)
            raise
        selection = self._selector.select(query, inputs.candidates, scores)
        shadow_items = inputs.candidates.items[selection.selected].tolist()
        served = [item.item for item in result.items]
        self._observer.shadow_agreement(
            query.surface.value,
            shadow,
            rank_biased_overlap(served, shadow_items),
            overlap_at_k(served, shadow_items, 10),
        )
