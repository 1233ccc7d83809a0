"""The rerank stage, shared by search and recommendations: candidates in, a better-ordered list out.

Every function takes a list of `Hit` (best first, `score` = similarity) and returns a new list:
- `collapse` / `dedupe`: keep one item per work (same normalised title and a shared normalised
  author: "The Secret Garden" by "Frances Hodgson Burnett" in three editions is one work),
- `blend`: mix similarity with a quality/popularity signal in [0, 1] (weight w),
- `mmr`: Maximal Marginal Relevance (Carbonell & Goldstein, 1998) for diversity (lambda).
Signals: `wilson_lower_bound` (share of positive ratings, penalised for few ratings; Evan Miller's
"How not to sort by average rating"), `count_signal` (log-scaled interaction counts),
`field_signal` (a numeric metadata field, min-max scaled).

Hand-written: each is a few lines of NumPy over a short candidate list; the libraries that have
them (e.g. recommender frameworks) would bring their own data model for no gain.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from embedscope.display import DisplayFields
from embedscope.encoders.base import l2_normalize
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONMapping

if TYPE_CHECKING:
    from embedscope.search.base import Hit


# --- signals ------------------------------------------------------------------------------------
def wilson_lower_bound(pos: npt.ArrayLike, n: npt.ArrayLike, z: float = 1.96) -> np.ndarray:
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


#: a work: (normalised title, normalised author names); no authors = matches any author
WorkKey = tuple[str, frozenset[str]]
_NAME_SEPARATORS = re.compile(r"[;|/]|\band\b|&")


def normalise_names(value: object) -> frozenset[str]:
    """'Martha Hailey Dubose;Frances Hodgson Burnett' -> {'martha hailey dubose', 'frances hodgson
    burnett'}: names split on ';', '|', '/', '&' and 'and' (not on ',', which also writes 'Tolkien, J.')."""
    if value is None or (isinstance(value, float) and value != value):
        return frozenset()
    return frozenset(n for n in (normalise_title(p) for p in _NAME_SEPARATORS.split(str(value))) if n)


def work_key(metadata: JSONMapping, fields: DisplayFields) -> WorkKey | None:
    """The work an item is an edition of, from its display title and subtitle (author) fields;
    None when the collection has no title field (then items are never collapsed)."""
    if not fields.title:
        return None
    title = metadata.get(fields.title)
    if title is None or (isinstance(title, float) and title != title) or not str(title).strip():
        return None
    author = metadata.get(fields.subtitle) if fields.subtitle else None
    return normalise_title(str(title)), normalise_names(author)


class WorkSet:
    """Works seen so far; `add` tells whether a key repeats one of them (same title, and the author
    sets share a name or one of them is empty)."""

    def __init__(self, keys: Sequence[WorkKey | None] = ()) -> None:
        self._authors: dict[str, list[frozenset[str]]] = {}
        for key in keys:
            self.add(key)

    def copy(self) -> WorkSet:
        out = WorkSet()
        out._authors = {title: list(authors) for title, authors in self._authors.items()}
        return out

    def add(self, key: WorkKey | None) -> bool:
        """True if `key` is new (it is remembered), False if it repeats a work already seen."""
        if key is None:
            return True
        title, authors = key
        seen = self._authors.setdefault(title, [])
        if any(not a or not authors or a & authors for a in seen):
            return False
        seen.append(authors)
        return True


def collapse(
    ids: Sequence[str],
    keys: Mapping[str, WorkKey | None],
    limit: int | None = None,
    *,
    seen: WorkSet | None = None,
) -> tuple[list[int], int]:
    """Positions of the first (best) id of each work, up to `limit`; and how many were dropped.

    `keys` maps ids to work keys (precomputed per data revision, so this is dictionary lookups);
    `seen` starts with works that must not appear at all (e.g. the item of a more-like-this query)."""
    works = seen or WorkSet()
    kept: list[int] = []
    dropped = 0
    for pos, item_id in enumerate(ids):
        if limit is not None and len(kept) >= limit:
            break
        if works.add(keys.get(item_id)):
            kept.append(pos)
        else:
            dropped += 1
    return kept, dropped


def dedupe(hits: Sequence[Hit], fields: DisplayFields | None = None) -> tuple[list[Hit], list[Hit]]:
    """Keep the first (best) hit of each work (see `collapse`); returns (kept, removed).
    `fields` says which metadata fields hold the title and the author (default: guessed)."""

    if fields is None:
        fields = DisplayFields.choose(list(dict.fromkeys(k for h in hits for k in (h.metadata or {}))))
    keys = {h.id: work_key(h.metadata or {}, fields) for h in hits}
    kept_pos, _ = collapse([h.id for h in hits], keys)
    kept_set = set(kept_pos)
    return [hits[i] for i in kept_pos], [h for i, h in enumerate(hits) if i not in kept_set]


def intra_list_diversity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance of a list's vectors (higher = more diverse)."""
    v = l2_normalize(np.asarray(vectors, dtype=np.float32))
    n = len(v)
    if n < 2:
        return 0.0
    sim = v @ v.T
    return float(1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1)))
