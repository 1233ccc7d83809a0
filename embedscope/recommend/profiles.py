"""User representations built from the embeddings of the items a user interacted with.

- mean: the centroid of the history (one taste vector),
- recency: an exponentially time-decayed mean (half-life in days, or in positions when there is no time),
- multi: PinnerSage-style multi-interest profile (Pal et al., KDD 2020): cluster the history
  (Ward agglomerative clustering, scikit-learn), one centroid per cluster ("interest"), retrieve per
  interest and merge the lists round-robin, larger interests first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedscope.encoders.base import l2_normalize
from embedscope.errors import EmbedscopeError

PROFILES = ("mean", "recency", "multi")
DAY = 86400.0


@dataclass
class Interest:
    """One cluster of a user's history: its (normalised) centroid and the history rows in it."""

    vector: np.ndarray
    members: np.ndarray  # row positions into the history


def mean_profile(vectors: np.ndarray) -> np.ndarray:
    """Centroid of the (normalised) history vectors, normalised; zero rows (items without a
    behavioural vector) do not pull it towards the origin."""
    v = l2_normalize(np.asarray(vectors, dtype=np.float32))
    live = np.any(v != 0, axis=1)
    if not live.any():
        return np.zeros(v.shape[1], dtype=np.float32)
    return l2_normalize(v[live].mean(axis=0, keepdims=True))[0]


def recency_weights(times: np.ndarray | None, n: int, half_life: float) -> np.ndarray:
    """exp-decay weights, 1 for the latest interaction and 1/2 at `half_life` days before it
    (positions when times are missing)."""
    if half_life <= 0:
        raise EmbedscopeError("half_life must be positive")
    t = np.asarray(times, dtype=np.float64) if times is not None else np.full(n, np.nan)
    if np.isnan(t).any():
        age = (n - 1 - np.arange(n)).astype(np.float64)  # positions back from the latest
    else:
        age = (t.max() - t) / DAY
    return np.power(0.5, age / half_life)


def recency_profile(vectors: np.ndarray, times: np.ndarray | None, half_life: float = 30.0) -> np.ndarray:
    v = l2_normalize(np.asarray(vectors, dtype=np.float32))
    w = recency_weights(times, len(v), half_life).astype(np.float32)
    w[~np.any(v != 0, axis=1)] = 0.0
    if w.sum() == 0:
        return np.zeros(v.shape[1], dtype=np.float32)
    return l2_normalize((w[:, None] * v).sum(axis=0, keepdims=True))[0]


def multi_interest(vectors: np.ndarray, *, max_interests: int = 3, min_size: int = 5) -> list[Interest]:
    """Cluster the history into at most `max_interests` interests of about `min_size`+ items each
    (fewer for short histories); interests are ordered largest first."""
    from sklearn.cluster import AgglomerativeClustering

    v = l2_normalize(np.asarray(vectors, dtype=np.float32))
    live = np.flatnonzero(np.any(v != 0, axis=1))
    if len(live) == 0:
        return [Interest(np.zeros(v.shape[1], dtype=np.float32), np.arange(len(v)))]
    n_clusters = int(max(1, min(max_interests, len(live) // max(1, min_size))))
    if n_clusters == 1:
        return [Interest(l2_normalize(v[live].mean(axis=0, keepdims=True))[0], live)]
    # Ward on unit vectors: squared Euclidean = 2 - 2 cos, so it groups by cosine similarity
    labels = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(v[live])
    out = [Interest(l2_normalize(v[live[labels == c]].mean(axis=0, keepdims=True))[0], live[labels == c])
           for c in range(n_clusters)]
    return sorted(out, key=lambda i: -len(i.members))


def round_robin_rank(scores: np.ndarray) -> np.ndarray:
    """Merge per-interest rankings round-robin without duplicates, as a score (higher is better).

    `scores` is (interests, items), interests in priority order. Round r takes each interest's r-th
    item in turn, skipping items already taken, so an item's merged position is the minimum over
    interests of (its rank there * interests + interest order): vectorised, no Python loop."""
    n_int, n_items = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(n_items)[None, :].repeat(n_int, 0), axis=1)
    ranks = np.where(np.isfinite(scores), ranks, n_items * 2)  # excluded items go last
    key = (ranks * n_int + np.arange(n_int)[:, None]).min(axis=0)
    return -key.astype(np.float64)
