"""Relevance: a number from 0 to 1 a reader (or an API client's threshold) can use, beside the raw
score, which has no fixed scale (BM25 grows with the query's length, a fused score is a weighted sum of
z-scores, a cosine depends on the model).

The mapping is stated, not learned per query: relevance = (cosine - LOW) / (HIGH - LOW), clipped to
[0, 1], where cosine is the query's cosine with the item in a dense version whose model was measured
(ANCHORS). For a recipe it is the cosine in its first measured dense part, whether or not that part
ranked the item (the order stays the fusion's: relevance never changes a ranking). A version or
recipe with no measured dense part (BM25 alone, word2vec, another model) has no relevance (None).

The anchors for all-MiniLM-L6-v2 come from `python bench/bench_relevance.py`: the best hit's cosine
is 0.47 or more for 95% of the books development set's 106 queries (2% fall below GOOD), 0.41 or more
for 95% of SciFact's 300 test queries (9% below GOOD), while 16 made-up and off-topic queries
("xyzzy plugh", "best pizza in new york") top out at 0.42 on the books and 0.41 on SciFact (all below
GOOD). LOW = 0.2 (no closer than an unrelated text), HIGH = 0.7; GOOD = 0.5 (cosine 0.45) is the
line between "no good match" and a match. What it does not do: rank well within a list. Books the
development set judged not relevant, somewhat and very relevant average 0.25, 0.34 and 0.36: it
tells an answerable query from a hopeless one, not the third hit from the fifth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from embedscope.encoders.base import Vectors
from embedscope.search.loaded import LoadedVersion
from embedscope.store.base import VersionInfo


class Rated(Protocol):
    """What `attach` sets a relevance on (a search hit: search/base.py's `Hit`, which imports this
    module, so it is named by its shape here)."""

    id: str
    relevance: float | None


#: (encoder, model) -> (cosine at relevance 0, cosine at relevance 1); see the module docstring
ANCHORS: dict[tuple[str, str], tuple[float, float]] = {("minilm", "all-MiniLM-L6-v2"): (0.2, 0.7)}
#: relevance levels, best first: (lowest relevance, label). Below GOOD there is "no good match".
STRONG, GOOD, WEAK = 0.75, 0.5, 0.25
LEVELS: tuple[tuple[float, str], ...] = ((STRONG, "strong"), (GOOD, "good"), (WEAK, "weak"), (0.0, "poor"))


def anchors(info: VersionInfo) -> tuple[float, float] | None:
    """The measured (LOW, HIGH) cosines of a version's model, or None (no stated scale)."""
    if info.sparse or info.metric != "cosine":
        return None
    name = str(info.encoder.get("name"))
    model = str(info.encoder.get("params", {}).get("model", ""))
    return ANCHORS.get((name, model.rsplit("/", 1)[-1]))


def of_cosine(cosine: float, scale: tuple[float, float]) -> float:
    low, high = scale
    return round(float(np.clip((cosine - low) / (high - low), 0.0, 1.0)), 4)


def level(relevance: float | None) -> str | None:
    """'strong', 'good', 'weak' or 'poor' (None without a relevance)."""
    if relevance is None:
        return None
    return next(label for floor, label in LEVELS if relevance >= floor)


def good_match(relevances: Sequence[float | None]) -> bool | None:
    """Whether any hit is a good match (relevance >= GOOD); None when no hit has a relevance."""
    known = [r for r in relevances if r is not None]
    if not known:
        return None
    return max(known) >= GOOD


def measured_part(parts: Sequence[LoadedVersion]) -> int | None:
    """The position of the first part (a LoadedVersion) whose cosines have a stated scale."""
    return next((i for i, v in enumerate(parts) if anchors(v.info) is not None), None)


def for_hits(
    v: LoadedVersion, query: Vectors, ids: Sequence[str], ranked: Mapping[str, float] | None = None
) -> list[float | None]:
    """Relevance of each id for one query vector of the loaded version `v` (a measured part).

    `ranked`: the part's own candidates (id -> cosine, what its index returned), used as they are;
    other ids are scored against the stored vectors (an item the fusion ranked from another part)."""
    scale = anchors(v.info)
    if scale is None:
        return [None] * len(ids)
    q = np.asarray(query if isinstance(query, np.ndarray) else query.toarray(), dtype=np.float32).ravel()
    q = q / (np.linalg.norm(q) or 1.0)
    out: list[float | None] = []
    for item_id in ids:
        cosine = (ranked or {}).get(item_id)
        if cosine is None:
            row = v.row_of.get(item_id)
            if row is None:  # added since the version was built: it has no vector here
                out.append(None)
                continue
            x = np.asarray(v.data.vectors[row], dtype=np.float32).ravel()
            cosine = float(x @ q / (np.linalg.norm(x) or 1.0))
        out.append(of_cosine(cosine, scale))
    return out


def attach(
    hits: Sequence[Rated], v: LoadedVersion, query: Vectors, ranked: Mapping[str, float] | None = None
) -> None:
    """Set each hit's `relevance` (`for_hits`; the hits of one query, `Hit`s of search/base.py)."""
    for h, r in zip(hits, for_hits(v, query, [h.id for h in hits], ranked), strict=True):
        h.relevance = r
