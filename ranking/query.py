"""The retrieval query vector of a request (one definition for retrieval and ranker features)."""

from __future__ import annotations

import numpy as np

from features.query_vector import query_for
from ranking.types import F32, Query


def retrieval_query(query: Query, user_vector: F32, recent_vector: F32, item_vectors: F32) -> F32:
    """Home: the user's blended vector; Now Playing: the seed item's vector blended with it."""
    seed = None if query.seed_item is None else np.asarray(item_vectors[query.seed_item], dtype=np.float32)
    return query_for(
        seed,
        user_vector,
        recent_vector,
        seed_weight=query.params.seed_weight,
        recent_weight=query.params.recent_weight,
    )
