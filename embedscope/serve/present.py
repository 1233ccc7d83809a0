"""Hits as the API returns them: embedscope.display.show, the one look of a hit, plus the metadata."""

from __future__ import annotations

import math

from embedscope.display import DisplayFields, show
from embedscope.search.base import Hit
from embedscope.serve import models as m


def hit_out(hit: Hit, fields: DisplayFields) -> m.HitOut:
    shown = show(hit.text, hit.metadata, fields)
    score = hit.score if math.isfinite(hit.score) else 0.0
    return m.HitOut(id=hit.id, score=round(float(score), 6), metadata=hit.metadata or {}, **shown.to_dict())
