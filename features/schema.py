"""Feature schema: names, dtypes, defaults and the ranker's model-input order.

This module is the single source of truth shared by offline training (``models/``) and online
serving (``ranking/``). Changing a name, the order or a default is a schema change: bump
``SCHEMA_VERSION`` so bundles and Redis keys built for the old schema are refused.
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 3

#: Per-user scalar statistics, stored packed as float32 in this order.
USER_STATS: Final[tuple[str, ...]] = (
    "user_activity_log",  # log1p(number of distinct items the user played)
    "user_playcount_log",  # log1p(mean play count per item)
)
#: Cold-start defaults for ``USER_STATS`` (a user with no history).
USER_STATS_DEFAULTS: Final[tuple[float, ...]] = (0.0, 0.0)

#: Per-item scalar statistics, stored in the bundle as a float32 matrix in this order.
ITEM_STATS: Final[tuple[str, ...]] = (
    "item_popularity_log",  # log1p(number of distinct listeners)
    "item_playcount_log",  # log1p(mean play count per listener)
)

#: Ranker input columns, in model-input order. The ONNX model takes one float32 tensor
#: named ``RANKER_INPUT_NAME`` of shape [n_candidates, len(RANKER_FEATURES)].
RANKER_FEATURES: Final[tuple[str, ...]] = (
    "retrieval_score",  # dot(query vector, item vector) as used by retrieval
    "user_item_dot",  # dot(user long-term vector, item vector)
    "user_item_cosine",  # cosine(user long-term vector, item vector)
    "recent_item_cosine",  # cosine(mean of recently played item vectors, item vector)
    "seed_item_cosine",  # cosine(seed item vector, item vector); 0 on Home
    "item_popularity_log",
    "item_playcount_log",
    "item_vector_norm",
    "user_activity_log",
    "user_playcount_log",
    "user_vector_norm",
    "is_now_playing",  # context: 1.0 on Now Playing, 0.0 on Home
    # Co-listen features from the bundle's item-neighbour table (features.item_neighbors); the
    # history is the user's known items plus recent plays.
    "history_colisten_sum",  # sum over history items h of weight(h -> item)
    "history_colisten_mean",  # history_colisten_sum / number of history items
    "history_colisten_hits",  # share of history items whose neighbour row holds the item
    "item_colisten_history",  # sum of the item's own neighbour weights that point into the history
    "seed_colisten_weight",  # the item's weight in the seed's neighbour row; 0 on Home / absent
    "seed_neighbor_inverse_rank",  # 1 / (1 + rank) in the seed's neighbour row; 0 on Home / absent
    "seed_reverse_weight",  # the seed's weight in the item's neighbour row; 0 on Home / absent
    "history_size_log",  # log1p(number of history items)
    "history_ease_score",  # history_colisten_sum + the negative table's sum: the row-truncated EASE score
    # Query-relative ranks: log1p(rank among this request's candidates, 0 = the largest value).
    "retrieval_score_rank_log",
    "user_item_dot_rank_log",
    "history_colisten_sum_rank_log",
    "item_colisten_history_rank_log",
    "history_ease_score_rank_log",
)
RANKER_INPUT_NAME: Final = "features"
N_RANKER_FEATURES: Final = len(RANKER_FEATURES)

#: Recent plays kept per user (the most recent first).
RECENT_PLAYS_MAX: Final = 50
