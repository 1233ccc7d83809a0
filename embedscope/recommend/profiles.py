"""User representations built from the embeddings of the items a user interacted with.

- mean: the centroid of the history (one taste vector),
- recency: an exponentially decayed mean (half-life in interactions by default, or in days),
- multi: PinnerSage-style multi-interest profile (Pal et al., KDD 2020): cluster the history
  (average-linkage agglomerative clustering on cosine distance, scikit-learn), one centroid per
  cluster ("interest"), retrieve per interest and merge the lists round-robin, larger interests first.
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


def recency_weights(times: np.ndarray | None, n: int, half_life: float, unit: str = "items") -> np.ndarray:
    """Exponential-decay weights: 1 for the latest interaction, 1/2 at `half_life` before it, counted
    in interactions (unit="items") or in days (unit="days"; falls back to items without times).

    Items is the default because people rate in bursts: on MovieLens most of a user's ratings share a
    day, so a half-life in days barely differs from the plain mean, while the last few interactions
    predict the next one far better (docs/recommend.md has the numbers)."""
    if half_life <= 0:
        raise EmbedscopeError("half_life must be positive")
    if unit not in ("items", "days"):
        raise EmbedscopeError(f"half-life unit must be 'items' or 'days', not {unit!r}")
    t = np.asarray(times, dtype=np.float64) if times is not None else np.full(n, np.nan)
    if unit == "items" or np.isnan(t).any():
        age = (n - 1 - np.arange(n)).astype(np.float64)  # positions back from the latest
    else:
        age = (t.max() - t) / DAY
    return np.power(0.5, age / half_life)


def recency_profile(
    vectors: np.ndarray,
    times: np.ndarray | None,
    half_life: float = 5.0,
    unit: str = "items",
) -> np.ndarray:
    """Recency-weighted mean of the history vectors (rows oldest first), normalised."""
    v = l2_normalize(np.asarray(vectors, dtype=np.float32))
    w = recency_weights(times, len(v), half_life, unit).astype(np.float32)
    w[~np.any(v != 0, axis=1)] = 0.0
    if w.sum() == 0:
        return np.zeros(v.shape[1], dtype=np.float32)
    return l2_normalize((w[:, None] * v).sum(axis=0, keepdims=True))[0]


def interest_groups(sim: np.ndarray, *, max_interests: int = 3, min_size: int = 5) -> list[np.ndarray]:
    """Split a history into interests from its items' (n, n) cosine-similarity matrix: at most
    `max_interests` groups of about `min_size`+ items (fewer for short histories), largest first.

    Average-linkage agglomerative clustering (scikit-learn) on precomputed cosine distances: working
    from the similarity matrix keeps the cost independent of the vector dimension (Ward on 3,000-dim
    tf-idf rows was ~100x slower)."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(sim)
    n_clusters = int(max(1, min(max_interests, n // max(1, min_size))))
    if n_clusters == 1:
        return [np.arange(n)]
    dist = np.clip(1.0 - np.asarray(sim, dtype=np.float64), 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    labels = AgglomerativeClustering(
        n_clusters=n_clusters, metric="precomputed", linkage="average"
    ).fit_predict(dist)
    groups = sorted((np.flatnonzero(labels == c) for c in range(n_clusters)), key=lambda g: -len(g))
    # average linkage isolates outliers as tiny clusters; an interest needs `min_size` items to get
    # its own slot in the round-robin (PinnerSage likewise keeps only its most important clusters)
    return [g for g in groups if len(g) >= min_size] or groups[:1]


def multi_interest(vectors: np.ndarray, *, max_interests: int = 3, min_size: int = 5) -> list[Interest]:
    """The history's interests (see `interest_groups`), each with its normalised centroid."""
    v = l2_normalize(np.asarray(vectors, dtype=np.float32))
    live = np.flatnonzero(np.any(v != 0, axis=1))
    if len(live) == 0:
        return [Interest(np.zeros(v.shape[1], dtype=np.float32), np.arange(len(v)))]
    sub = v[live]
    groups = interest_groups(sub @ sub.T, max_interests=max_interests, min_size=min_size)
    return [Interest(l2_normalize(sub[g].mean(axis=0, keepdims=True))[0], live[g]) for g in groups]


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
