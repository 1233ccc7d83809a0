"""Hits as the API returns them: embedscope.display.show, the one look of a hit, plus the metadata
and the relevance the search path gave it (embedscope.search.relevance)."""

from __future__ import annotations

import math

from embedscope.display import DisplayFields, show
from embedscope.search import relevance
from embedscope.search.base import Hit
from embedscope.serve import models as m


def hit_out(hit: Hit, fields: DisplayFields) -> m.HitOut:
    shown = show(hit.text, hit.metadata, fields)
    score = hit.score if math.isfinite(hit.score) else 0.0
    return m.HitOut(
        id=hit.id,
        score=round(float(score), 6),
        relevance=hit.relevance,
        match=relevance.level(hit.relevance),
        metadata=hit.metadata or {},
        **shown.to_dict(),
    )
