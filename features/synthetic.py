"""A synthetic music catalog with realistic structure (the project's default dataset).

Structure:

- artists each belong to one latent genre and have ``tracks_per_artist`` tracks (the items);
- popularity is Zipfian at two levels: artists (exponent ~1.05 over a random ranking) and tracks
  within an artist (the first tracks are the hits);
- each user prefers 1-3 genres (Dirichlet weights) and explores the rest a little; a share of
  plays comes from the global charts regardless of genre;
- users return to artists they like: some plays add another track of an artist already played;
- the number of items per user and the play counts are heavy-tailed (log-normal / Pareto).

Everything is vectorised numpy driven by one ``np.random.default_rng(seed)``: the same
arguments always produce the same dataset.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from features.datasets import Interactions, interactions_from_triples

ARTIST_ZIPF = 1.05
TRACK_ZIPF = 0.9
EXPLORE_SHARE = 0.1  # genre mass spread uniformly over all genres
CHARTS_SHARE = 0.08  # plays drawn from global popularity, ignoring genre
SIBLING_SHARE = 0.3  # plays that add another track of an artist the user already played


def _sample_weighted(
    rng: np.random.Generator,
    cum: npt.NDArray[np.float64],
    lo: npt.NDArray[np.float64],
    hi: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Sample positions in a global cumulative-weight array, each draw restricted to [lo, hi)."""
    r = lo + rng.random(lo.shape[0]) * (hi - lo)
    idx: npt.NDArray[np.int64] = np.searchsorted(cum, r, side="right").astype(np.int64)
    clipped: npt.NDArray[np.int64] = np.minimum(idx, cum.shape[0] - 1)
    return clipped


def generate_synthetic(
    n_items: int = 20_000,
    n_users: int = 5_000,
    *,
    n_genres: int = 24,
    tracks_per_artist: int = 10,
    mean_items_per_user: int = 40,
    seed: int = 0,
) -> Interactions:
    """Generate a deterministic synthetic catalog of ``n_items`` tracks and ``n_users`` users.

    Items are tracks ``t0000000``...; ``artist_ids`` group them (``a00000``...), named
    ``"Artist 12 – Track 3"``. ``plays`` holds heavy-tailed play counts.
    """
    if n_items < 1 or n_users < 1 or n_genres < 1 or tracks_per_artist < 1 or mean_items_per_user < 1:
        raise ValueError("n_items, n_users, n_genres, tracks_per_artist, mean_items_per_user must be >= 1")
    rng = np.random.default_rng(seed)

    # Catalog: item i is track (i % tpa) of artist (i // tpa).
    n_artists = -(-n_items // tracks_per_artist)
    item_artist = np.arange(n_items, dtype=np.int64) // tracks_per_artist
    item_track = np.arange(n_items, dtype=np.int64) % tracks_per_artist
    artist_genre = rng.integers(0, n_genres, size=n_artists)
    artist_rank = rng.permutation(n_artists) + 1
    artist_weight = artist_rank.astype(np.float64) ** -ARTIST_ZIPF
    item_weight = artist_weight[item_artist] * (item_track + 1.0) ** -TRACK_ZIPF
    item_genre = artist_genre[item_artist]

    # Per-genre cumulative popularity over items sorted by genre; and a global one for the charts.
    by_genre = np.argsort(item_genre, kind="stable")
    genre_cum = np.cumsum(item_weight[by_genre])
    genre_end = np.searchsorted(item_genre[by_genre], np.arange(n_genres), side="right")
    genre_start = np.concatenate(([0], genre_end[:-1]))
    cum_at = np.concatenate(([0.0], genre_cum))
    genre_lo, genre_hi = cum_at[genre_start], cum_at[genre_end]
    global_cum = np.cumsum(item_weight)

    # Users: a few preferred genres, plus exploration.
    n_pref = rng.integers(1, 4, size=n_users)
    pref = np.zeros((n_users, n_genres), dtype=np.float64)
    ranks = np.argsort(rng.random((n_users, n_genres)), axis=1)[:, :3]
    mix = rng.dirichlet(np.ones(3), size=n_users) * (np.arange(3)[None, :] < n_pref[:, None])
    mix /= mix.sum(axis=1, keepdims=True)
    np.put_along_axis(pref, ranks, mix, axis=1)
    genre_empty = genre_hi <= genre_lo
    pref[:, genre_empty] = 0.0
    pref = (1.0 - EXPLORE_SHARE) * pref + EXPLORE_SHARE * (~genre_empty) / max(1, int((~genre_empty).sum()))
    pref /= pref.sum(axis=1, keepdims=True)
    pref_cum = np.cumsum(pref, axis=1)

    # Number of base draws per user: log-normal with the requested mean, at least 1.
    sigma = 0.8
    mu = np.log(mean_items_per_user / (1.0 + SIBLING_SHARE)) - sigma**2 / 2
    counts = np.clip(np.rint(rng.lognormal(mu, sigma, size=n_users)), 1, max(1, n_items // 2))
    counts = counts.astype(np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    n_draws = users.shape[0]

    genres = (rng.random(n_draws)[:, None] > pref_cum[users]).sum(axis=1)
    genres = np.minimum(genres, n_genres - 1)
    items = by_genre[_sample_weighted(rng, genre_cum, genre_lo[genres], genre_hi[genres])]
    charts = rng.random(n_draws) < CHARTS_SHARE
    n_charts = int(charts.sum())
    items[charts] = _sample_weighted(rng, global_cum, np.zeros(n_charts), np.full(n_charts, global_cum[-1]))
    # Return to liked artists: another track of the same artist (hits more likely).
    sib = rng.random(n_draws) < SIBLING_SHARE
    sib_artist = item_artist[items[sib]]
    first = sib_artist * tracks_per_artist
    n_tracks = np.minimum(tracks_per_artist, n_items - first)
    track = np.minimum(np.floor(n_tracks * rng.random(sib_artist.shape[0]) ** 2).astype(np.int64), n_tracks - 1)
    users = np.concatenate((users, users[sib]))
    items = np.concatenate((items, first + track))

    # Heavy-tailed play counts: user activity x Pareto per interaction, more for preferred genres.
    user_level = rng.lognormal(0.0, 0.7, size=n_users)
    affinity = 0.5 + pref[users, item_genre[items]] * 2.0
    raw = (rng.pareto(1.3, size=users.shape[0]) + 1.0) * 2.0 * user_level[users] * affinity
    plays = np.maximum(1.0, np.floor(raw)).astype(np.float32)
    matrix = interactions_from_triples(users, items, plays, n_users, n_items)

    width = max(7, len(str(n_items - 1)))
    artist_width = max(5, len(str(n_artists - 1)))
    item_ids = [f"t{i:0{width}d}" for i in range(n_items)]
    artist_names = [f"a{a:0{artist_width}d}" for a in range(n_artists)]
    artist_ids = [artist_names[a] for a in item_artist.tolist()]
    names = [f"Artist {a} – Track {t + 1}" for a, t in zip(item_artist.tolist(), item_track.tolist(), strict=True)]
    return Interactions(
        user_ids=[f"u{u:07d}" for u in range(n_users)],
        item_ids=item_ids,
        artist_ids=artist_ids,
        item_names=names,
        plays=matrix,
        name=f"synthetic-{n_items}",
    )


__all__ = ["generate_synthetic"]
