"""A hit as every JSON answer shows it: HTTP `/search`, `/similar`, `/compare` and `compare --json`."""

from __future__ import annotations

import math

from embedscope.display import DisplayFields, show
from embedscope.jsontypes import JSONObject
from embedscope.search.base import Hit
from embedscope.search.relevance import level


def hit_json(hit: Hit, fields: DisplayFields) -> JSONObject:
    """A hit as every JSON answer shows it (HTTP `/search`, `/compare`, `compare --json`): id, the
    ranking's score, relevance and its level, what a person sees of it (`display.show`), metadata."""
    score = hit.score if math.isfinite(hit.score) else 0.0
    return {
        "id": hit.id,
        "score": round(float(score), 6),
        "relevance": hit.relevance,
        "match": level(hit.relevance),
        "metadata": hit.metadata or {},
        **show(hit.text, hit.metadata, fields).to_dict(),
    }
