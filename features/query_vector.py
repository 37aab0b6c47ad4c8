"""Retrieval query vectors, shared by offline evaluation and online retrieval."""

from __future__ import annotations

import numpy as np

from features.ranker_features import F32, unit

#: Weight of the recent-plays vector in the user query (the rest is the long-term vector).
DEFAULT_RECENT_WEIGHT = 0.3
#: Weight of the seed item in the Now Playing query (the rest is the user query).
DEFAULT_SEED_WEIGHT = 0.7


def user_query(user_vector: F32, recent_vector: F32, recent_weight: float = DEFAULT_RECENT_WEIGHT) -> F32:
    """Blend the long-term user vector with recent plays; all-zero when the user has neither."""
    long_term, recent = unit(user_vector), unit(recent_vector)
    if not recent.any():
        return long_term
    if not long_term.any():
        return recent
    return ((1.0 - recent_weight) * long_term + recent_weight * recent).astype(np.float32)


def now_playing_query(
    seed_vector: F32, user_vector: F32, recent_vector: F32, seed_weight: float = DEFAULT_SEED_WEIGHT
) -> F32:
    """Blend the seed item's vector with the user query (seed only for a cold-start user)."""
    return query_for(seed_vector, user_vector, recent_vector, seed_weight=seed_weight)


def query_for(
    seed_vector: F32 | None,
    user_vector: F32,
    recent_vector: F32,
    *,
    seed_weight: float = DEFAULT_SEED_WEIGHT,
    recent_weight: float = DEFAULT_RECENT_WEIGHT,
) -> F32:
    """The retrieval query of a request: Now Playing when a seed is given, else Home."""
    user = user_query(user_vector, recent_vector, recent_weight)
    if seed_vector is None:
        return user
    seed = unit(seed_vector)
    if not user.any():
        return seed
    return (seed_weight * seed + (1.0 - seed_weight) * user).astype(np.float32)
