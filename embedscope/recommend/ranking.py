"""Re-ranking after candidate generation, for recommendations and search alike.

Every function takes a list of `Hit` (best first, `score` = similarity) and returns a new list:
- `blend`: mix similarity with a quality/popularity signal in [0, 1] (weight w),
- `mmr`: Maximal Marginal Relevance (Carbonell & Goldstein, 1998) for diversity (lambda),
- `dedupe`: drop near-identical items (same normalised title).
Signals: `wilson_lower_bound` (share of positive ratings, penalised for few ratings; Evan Miller's
"How not to sort by average rating"), `count_signal` (log-scaled interaction counts),
`field_signal` (a numeric metadata field, min-max scaled).

Hand-written: each is a few lines of NumPy over a short candidate list; the libraries that have
them (e.g. recommender frameworks) would bring their own data model for no gain.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from embedscope.encoders.base import l2_normalize
from embedscope.errors import EmbedscopeError

if TYPE_CHECKING:
    from embedscope.api import Hit


# --- signals ------------------------------------------------------------------------------------
def wilson_lower_bound(pos: Any, n: Any, z: float = 1.96) -> np.ndarray:
    """Lower bound of the Wilson score interval for the positive share pos/n (0 when n = 0)."""
    pos = np.asarray(pos, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = pos / n
        centre = p + z * z / (2 * n)
        margin = z * np.sqrt((p * (1 - p) + z * z / (4 * n)) / n)
        out = (centre - margin) / (1 + z * z / n)
    return np.where(n > 0, out, 0.0)


def count_signal(counts: Mapping[str, float] | pd.Series) -> dict[str, float]:
    """log(1 + count) / log(1 + max count): popularity in [0, 1] without the head dominating."""
    s = pd.Series(counts, dtype="float64")
    if s.empty or s.max() <= 0:
        return {}
    return (np.log1p(s) / np.log1p(s.max())).to_dict()


def field_signal(frame: pd.DataFrame, field: str) -> dict[str, float]:
    """A numeric metadata field min-max scaled to [0, 1]; missing values count as 0."""
    if field not in frame.columns:
        raise EmbedscopeError(
            f"quality field '{field}' not found; metadata fields: {', '.join(map(str, frame.columns))}"
        )
    col = pd.to_numeric(frame[field], errors="coerce")
    if col.notna().sum() == 0:
        raise EmbedscopeError(f"quality field '{field}' has no numeric values")
    lo, hi = col.min(), col.max()
    scaled = (col - lo) / (hi - lo) if hi > lo else col * 0 + 1.0
    return scaled.fillna(0.0).to_dict()


# --- re-rankers -----------------------------------------------------------------------------------
def blend(hits: Sequence[Hit], quality: Mapping[str, float], weight: float) -> list[Hit]:
    """score' = (1 - weight) * similarity + weight * quality; re-sorted. weight 0 = unchanged."""
    if not 0.0 <= weight <= 1.0:
        raise EmbedscopeError("popularity/quality weight must be between 0 and 1")
    if weight == 0 or not hits:
        return list(hits)
    out = [replace(h, score=(1 - weight) * h.score + weight * float(quality.get(h.id, 0.0))) for h in hits]
    return sorted(out, key=lambda h: -h.score)


def mmr(hits: Sequence[Hit], vectors: np.ndarray, lam: float = 0.7, k: int | None = None) -> list[Hit]:
    """Greedy MMR: pick argmax of lam * relevance - (1 - lam) * max cosine to the picked ones.

    `vectors` are the hits' vectors, row-aligned with `hits`. lam = 1 keeps the input order."""
    if not 0.0 <= lam <= 1.0:
        raise EmbedscopeError("MMR lambda must be between 0 and 1")
    k = len(hits) if k is None else min(k, len(hits))
    if lam >= 1.0 or len(hits) <= 1:
        return list(hits)[:k]
    v = l2_normalize(np.asarray(vectors, dtype=np.float32))
    rel = np.array([h.score for h in hits], dtype=np.float64)
    sim = v @ v.T
    chosen: list[int] = []
    max_sim = np.full(len(hits), -np.inf)
    left = np.ones(len(hits), dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = np.where(left, lam * rel - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(value))
        chosen.append(best)
        left[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return [hits[i] for i in chosen]


_YEAR = re.compile(r"\(\d{4}\)")
_ARTICLE_SUFFIX = re.compile(r",\s*(the|a|an|la|le|les|il|el|die|der|das)$")


def normalise_title(text: str) -> str:
    """Lower-case, accents and punctuation removed, a trailing year "(1995)" dropped and a trailing
    ", The" (library-style titles) moved to the front:
    "Shawshank Redemption, The (1994)" -> "the shawshank redemption"."""
    t = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode().lower()
    t = _YEAR.sub(" ", t).strip()
    m = _ARTICLE_SUFFIX.search(t)
    if m:
        t = f"{m.group(1)} {t[: m.start()]}"
    t = re.sub(r"[^a-z0-9]+", " ", t)
    return " ".join(t.split())


def title_of(hit: Hit, field: str = "title") -> str:
    """The hit's title: a metadata field when present, else its text up to the first '. '."""
    value = hit.metadata.get(field) if hit.metadata else None
    return str(value) if value else hit.text.split(". ")[0]


def dedupe(hits: Sequence[Hit], key: Callable[[Hit], str] | None = None) -> tuple[list[Hit], list[Hit]]:
    """Keep the first (best) of hits whose key (default: normalised title) is equal.
    Returns (kept, removed)."""
    key = key or (lambda h: normalise_title(title_of(h)))
    seen: set[str] = set()
    kept, removed = [], []
    for h in hits:
        k = key(h)
        (removed if k in seen else kept).append(h)
        seen.add(k)
    return kept, removed


def intra_list_diversity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance of a list's vectors (higher = more diverse)."""
    v = l2_normalize(np.asarray(vectors, dtype=np.float32))
    n = len(v)
    if n < 2:
        return 0.0
    sim = v @ v.T
    return float(1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1)))
