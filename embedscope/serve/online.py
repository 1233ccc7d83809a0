"""Serving a running online experiment: the list a search gets while one runs (`present`), which
`/search` calls (routers/search.py); starting, stopping, reports and clicks are routers/experiments.py.

Which searches join the running experiment (the rule docs/serve.md states): a search that names
neither `version` nor `encoder`, so asks for the collection's default search, which is what the
experiment is about, and that carries a `session` id, so that an A/B user can be bucketed and a
click tied to the list it was made on. Searches naming a version or encoder (the page's encoder
switch and side-by-side view, API clients that pin a version), more-like-this, compare and
recommendations are served as if no experiment ran, and are not logged in it.
"""

from __future__ import annotations

import logging
from typing import cast

from embedscope.errors import ConflictError, NotFoundError, StorageFullError
from embedscope.experiments import search_ranker
from embedscope.search.base import STAGES, Hit, SearchResult
from embedscope.serve import models as m
from embedscope.serve.state import Served

log = logging.getLogger("embedscope.serve")


def present(
    served: Served, query: str, k: int, where: str | None, session: str
) -> tuple[SearchResult, m.ExperimentShown] | None:
    """The running experiment's list for this query (interleaved, or the session's A/B side), logged
    as an impression; None when no experiment runs. Both sides search through the served
    collection's pipeline, as `/search?version=<side>` would."""
    exps = served.experiments
    exp = exps.running()
    if exp is None:
        return None
    runs: list[SearchResult] = []
    rank_a, rank_b = (
        search_ranker(served.pipeline, side, k=k, where=where, results=runs) for side in (exp.a, exp.b)
    )
    try:
        imp = exps.present(exp, query, rank_a, rank_b, k=k, user=session)
    except StorageFullError as exc:  # the impression cannot be logged: answer as if none ran
        log.warning("experiment '%s' is not served: %s", exp.name, exc)
        return None
    except NotFoundError as exc:  # a side's version was deleted after the experiment started
        raise ConflictError(
            f"experiment '{exp.name}' cannot be served: {exc}; stop it (`embedscope experiment stop "
            f"{served.name}`)"
        ) from None
    stages = {s: sum(r.stages[s] for r in runs) for s in STAGES}
    if imp.side is not None:  # A/B: one side answered
        using, encoder = runs[0].using, runs[0].encoder
    else:
        using = f"{exp.a}|{exp.b}"
        encoder = f"interleaved({runs[0].encoder}, {runs[1].encoder})"
    hits = cast(list[Hit], imp.results)  # both sides are search rankers: their results are hits
    result = SearchResult(hits, using, encoder, stages, cached=all(r.cached for r in runs))
    return result, m.ExperimentShown(name=exp.name, method=exp.method, impression=imp.id, side=imp.side)
