"""Hits as the API returns them: embedscope.display.show, the one look of a hit, plus the metadata
and the relevance the search path gave it (embedscope.search.relevance)."""

from __future__ import annotations

from embedscope.display import DisplayFields
from embedscope.search.base import Hit
from embedscope.search.present import hit_json
from embedscope.serve import models as m


def hit_out(hit: Hit, fields: DisplayFields) -> m.HitOut:
    return m.HitOut(**hit_json(hit, fields))
