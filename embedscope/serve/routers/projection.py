"""The map of a collection: a version's items projected to 2-D (embedscope.projection), for the page.

Coordinates are cached per version revision, method, sample and seed (the same cache
`embedscope project` fills). PCA is computed on demand (well under a second for 5,000 MiniLM
vectors); UMAP and t-SNE take tens of seconds (UMAP compiles on first use) and would hold a server
worker that long, so the server draws them only once `embedscope project` has cached them, and says
so when asked for one it does not have. Without `method`, the best cached one is drawn (UMAP, then
t-SNE, then PCA), else PCA.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from embedscope.errors import NotFoundError
from embedscope.projection import DEFAULT_SAMPLE, cached_methods, point_data, project
from embedscope.serve import models as m
from embedscope.serve.deps import State

router = APIRouter(prefix="/api/collections/{name}", tags=["read"])
MAX_SAMPLE = 50_000


@router.get("/projection")
def projection(
    name: str,
    request: Request,
    state: State,
    method: Annotated[
        Literal["pca", "umap", "tsne"] | None,
        Query(description="default: the best cached (umap, tsne, pca), else pca computed now"),
    ] = None,
    version: Annotated[
        str | None, Query(max_length=200, description="version or recipe (default: the active version)")
    ] = None,
    sample: Annotated[int, Query(ge=3, le=MAX_SAMPLE, description="at most this many items, seeded")] = (
        DEFAULT_SAMPLE
    ),
    color_by: Annotated[
        str | None, Query(max_length=200, description="metadata field that colours the points")
    ] = None,
) -> m.ProjectionOut:
    """A version's items in two dimensions, with titles and colours, for the page's map."""
    served = state.get(name)
    request.state.record.update(collection=name, version=version, method=method, sample=sample)
    available = cached_methods(served.reader, version, sample=sample)
    if method is None:
        chosen = available[0] if available else "pca"
    elif method != "pca" and method not in available:
        command = f"embedscope project {name} --method {method} --sample {sample}"
        command += f" --version {version}" if version else ""
        raise NotFoundError(
            f"no {method} projection of this version is cached yet: run `{command}` once (UMAP: about "
            "30 s), or ask for method=pca, computed now"
        )
    else:
        chosen = method
    proj = project(served.reader, version, method=chosen, sample=sample)
    key = (str(proj.path), served.reader.data_revision(), color_by)
    # titles and colours of up to 50,000 points, made outside the cache's lock: searches go on meanwhile
    points, _ = served.projections.get_or_compute(key, lambda: point_data(served.reader, proj, color_by))
    if proj.method not in available:  # just computed
        available = [*available, proj.method]
    request.state.record["method"] = proj.method
    return m.ProjectionOut(
        **points,
        sample=proj.sample,
        seed=proj.seed,
        cached=proj.cached,
        seconds=proj.seconds,
        available=available,
    )
