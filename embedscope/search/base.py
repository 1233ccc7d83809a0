"""What the search path hands out: hits, and a result that says how it was made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Hit:
    id: str
    #: the ranking's own score (cosine, BM25, a fused sum): its scale depends on what answered
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: 0..1 on a stated scale (search/relevance.py), for a text query answered by a measured dense
    #: model; None where there is none (BM25 alone, more-like-this)
    relevance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the stages a query passes through, timed in seconds (the server's metrics and responses show them)
STAGES = ("encode", "search", "rank")


@dataclass
class SearchResult:
    hits: list[Hit]
    #: the version or recipe that answered
    using: str
    #: its encoder, or for a recipe its parts: "hybrid(bm25+minilm)"
    encoder: str
    #: seconds per stage: encode (query -> vectors), search (filter mask + candidate lookup),
    #: rank (fusion, rerank, items -> hits)
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    #: every query vector came from the caller's cache
    cached: bool = False
    #: parts that knew none of the query's terms and were left out of the fusion
    skipped_parts: list[str] = field(default_factory=list)
    #: candidates dropped as repeats of a better-ranked work
    collapsed: int = 0

    @property
    def good_match(self) -> bool | None:
        """False: "no good match", no hit reaches relevance GOOD (the nearest items are still the
        hits); None: the search has no relevance scale (search/relevance.py)."""
        from embedscope.search.relevance import good_match

        return good_match([h.relevance for h in self.hits])

    @property
    def seconds(self) -> float:
        return sum(self.stages.values())
