"""Recommendations for a stored user or an anonymous session (embedscope.recommend)."""

from __future__ import annotations

import importlib.util
import time

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedscope.errors import EmbedscopeError
from embedscope.search.base import Hit
from embedscope.serve import models as m
from embedscope.serve.deps import State, ms
from embedscope.serve.present import hit_out

router = APIRouter(prefix="/api/collections/{name}", tags=["read"])


@router.post("/recommend", responses={501: {"model": m.ErrorOut}})
def recommend(name: str, req: m.RecommendRequest, request: Request, state: State) -> m.RecommendResponse:
    """Recommendations for a stored user (`user`) or an anonymous list of liked `items`."""
    served = state.get(name)
    record = request.state.record
    record.update(collection=name, user=req.user, items=req.items, k=req.k, where=req.where)
    if (req.user is None) == (req.items is None):
        raise EmbedscopeError("give exactly one of user (a user id) or items (a list of item ids)")
    if importlib.util.find_spec("embedscope.recommend") is None:
        raise StarletteHTTPException(501, "recommendations are not available in this build")
    from embedscope.recommend import Recommender

    fields = served.fields()
    t0 = time.perf_counter()
    rec = served.recommenders.get(req.version)
    if rec is None:
        rec = served.recommenders[req.version] = Recommender(served.reader, req.version)
    result = rec.recommend(req.user, items=req.items, k=req.k, where=req.where, profile=req.profile)
    took = time.perf_counter() - t0
    hits = []
    for r in result.items:
        h = hit_out(Hit(r.id, r.score, r.text, r.metadata), fields)
        hits.append(m.RecommendedOut(**h.model_dump(), because=[str(b.get("id")) for b in r.because]))
    record.update(version=result.version, ids=[h.id for h in hits], fallback=result.fallback)
    return m.RecommendResponse(
        collection=name,
        user=result.user,
        profile=result.profile,
        version=result.version,
        version_reason=result.version_reason,
        history_size=result.history_size,
        fallback=result.fallback,
        message=result.message,
        took_ms=ms(took),
        hits=hits,
    )
