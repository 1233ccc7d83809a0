"""Search, more like this, and side-by-side comparison: all through the collection's search pipeline."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from embedscope.compare import compare
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject
from embedscope.search.base import SearchResult
from embedscope.serve import models as m
from embedscope.serve import online
from embedscope.serve.deps import State, ms
from embedscope.serve.present import hit_out
from embedscope.serve.state import Served, ServerState

router = APIRouter(prefix="/api/collections/{name}", tags=["read"])


def resolve(served: Served, version: str | None, encoder: str | None) -> str | None:
    """The version or recipe to use: named, or the one built with `encoder`, or None = active."""
    if version and encoder:
        raise EmbedscopeError("give either version or encoder, not both")
    return served.pipeline.name_for_encoder(encoder) if encoder else version


def respond(
    state: ServerState,
    served: Served,
    result: SearchResult,
    k: int,
    where: str | None,
    query: str | None,
    experiment: m.ExperimentShown | None = None,
) -> m.SearchResponse:
    """A pipeline result as the API's response; the display work counts to the rank stage."""
    t0 = time.perf_counter()
    fields = served.fields()
    hits = [hit_out(h, fields) for h in result.hits]
    stages = dict(result.stages)
    stages["rank"] += time.perf_counter() - t0
    state.metrics.observe_stages(served.name, result.using, stages)
    return m.SearchResponse(
        collection=served.name,
        version=result.using,
        encoder=result.encoder,
        query=query,
        k=k,
        where=where,
        cached=result.cached,
        took_ms=ms(sum(stages.values())),
        stages=m.Stages(**{f"{s}_ms": ms(t) for s, t in stages.items()}),
        hits=hits,
        good_match=result.good_match,
        experiment=experiment,
    )


def run_search(state: ServerState, req: m.SearchRequest, name: str, record: JSONObject) -> m.SearchResponse:
    served = state.get(name)
    query = req.query.strip()
    record.update(collection=name, query=query, k=req.k, where=req.where)
    using = resolve(served, req.version, req.encoder)
    shown = None
    # the rule of serve/online.py: the default search of a session joins a running experiment
    if req.session and using is None:
        shown = online.present(served, query, req.k, req.where, req.session)
    if shown is not None:
        result, experiment = shown
        record.update(experiment=experiment.name, impression=experiment.impression)
    else:
        result, experiment = served.pipeline.search(query, req.k, using=using, where=req.where), None
    record.update(version=result.using, cached=result.cached, ids=[h.id for h in result.hits])
    return respond(state, served, result, req.k, req.where, query, experiment)


@router.get("/search")
def search_get(
    name: str, req: Annotated[m.SearchRequest, Query()], request: Request, state: State
) -> m.SearchResponse:
    """Semantic search. `version` may name a search recipe (`hybrid`: a sparse and a dense version fused).
    While an online experiment runs, a search with a `session` and no `version` or `encoder` gets the
    experiment's list and an `experiment` object to send clicks with (docs/online.md)."""
    return run_search(state, req, name, request.state.record)


@router.post("/search")
def search_post(name: str, req: m.SearchRequest, request: Request, state: State) -> m.SearchResponse:
    return run_search(state, req, name, request.state.record)


def run_similar(state: ServerState, req: m.SimilarRequest, name: str, record: JSONObject) -> m.SearchResponse:
    served = state.get(name)
    record.update(collection=name, item=req.id, k=req.k, where=req.where)
    using = resolve(served, req.version, req.encoder)
    result = served.pipeline.similar(req.id, req.k, using=using, where=req.where)
    record.update(version=result.using, ids=[h.id for h in result.hits])
    return respond(state, served, result, req.k, req.where, None)


@router.get("/similar")
def similar_get(
    name: str, req: Annotated[m.SimilarRequest, Query()], request: Request, state: State
) -> m.SearchResponse:
    """More like this: the items nearest to item `id` (itself and its other editions excluded)."""
    return run_similar(state, req, name, request.state.record)


@router.post("/similar")
def similar_post(name: str, req: m.SimilarRequest, request: Request, state: State) -> m.SearchResponse:
    return run_similar(state, req, name, request.state.record)


def run_compare(
    state: ServerState, req: m.CompareRequest, name: str, record: JSONObject
) -> m.CompareResponse:
    served = state.get(name)
    record.update(collection=name, query=req.query, k=req.k, where=req.where, versions=req.versions)
    out = compare(served.reader, req.query, req.versions, k=req.k, where=req.where, pipeline=served.pipeline)
    for c in out.columns:
        if c.result is not None:
            state.metrics.observe_stages(name, c.result.using, c.result.stages)
    body = m.CompareResponse(**out.to_json(served.fields()))
    record["ids"] = {r.version: [h.id for h in r.hits] for r in body.runs}
    return body


@router.get("/compare")
def compare_get(
    name: str, req: Annotated[m.CompareRequest, Query()], request: Request, state: State
) -> m.CompareResponse:
    """One query against several versions and recipes (default: all), each timed, same filter."""
    return run_compare(state, req, name, request.state.record)


@router.post("/compare")
def compare_post(name: str, req: m.CompareRequest, request: Request, state: State) -> m.CompareResponse:
    return run_compare(state, req, name, request.state.record)
